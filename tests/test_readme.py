"""The README's feature-store walk-through runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str, language: str = "python") -> str:
    """The first fenced block of that language after a README heading."""
    section = README.read_text(encoding="utf-8").split(heading, 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found is not None, f"no {language} block under {heading!r}"
    return found.group(1)


def test_feature_store_walkthrough_runs(tmp_path: Path) -> None:
    code = readme_block("## The feature store")
    script = tmp_path / "walkthrough.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, LOOPWORKS_HOME=str(tmp_path / "home"))
    env.pop("LOOPWORKS_ONLINE_STORE_URL", None)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("{'review_id': 'r1'") and "'sentiment': 1" in lines[0]
    assert lines[1] == "walkthrough"
    assert lines[2] == "0"  # the relabel is served online
    history = "\n".join(lines[3:8])
    assert history.count("r2") == 2  # ...and the history keeps both labels
    as_of = lines[-2:]
    assert as_of[0].split()[-1] == "-1" and as_of[1].split()[-1] == "0"


def test_sdk_example_runs(tmp_path: Path) -> None:
    code = readme_block("## From Python: one object for a home")
    script = tmp_path / "sdk.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, LOOPWORKS_HOME=str(tmp_path / "home"))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Completed"]
    assert len(list((tmp_path / "review-output").rglob("output.json"))) == 1


def test_models_walkthrough_runs(tmp_path: Path) -> None:
    """The README's models block, command by command, as a user types it."""
    block = readme_block("## Models and predictions", "sh")
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, LOOPWORKS_HOME=str(tmp_path / "home"),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "home" / "models" / "sentiment" / "1" / "model.json").is_file()
    assert (tmp_path / "predictions.parquet").is_file()
    assert "sentiment-check" in result.stdout and "InProgress" in result.stdout
