"""Settings resolve as argument, then LOOPWORKS_* environment, then config file, then default."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopworks.errors import ConfigurationError
from loopworks.settings import load_settings


def test_order_of_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LOOPWORKS_HOME", str(home))
    monkeypatch.delenv("LOOPWORKS_WORKERS", raising=False)
    assert load_settings().home == home
    (home / "config.toml").write_text('workers = 3\ntokenizer = "from-config"\n')
    assert load_settings().workers == 3
    monkeypatch.setenv("LOOPWORKS_WORKERS", "5")
    assert load_settings().workers == 5
    assert load_settings(workers=7).workers == 7
    assert load_settings().tokenizer == "from-config"
    assert load_settings(home=str(tmp_path / "other")).jobs_dir == tmp_path / "other" / "jobs"


def test_bad_settings_say_what_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWORKS_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPWORKS_WORKERS", "many")
    with pytest.raises(ConfigurationError, match="'workers' must be a whole number"):
        load_settings()
    monkeypatch.delenv("LOOPWORKS_WORKERS")
    (tmp_path / "config.toml").write_text("colour = 'blue'\n")
    with pytest.raises(ConfigurationError, match=r"config.toml: unknown setting\(s\) colour"):
        load_settings()
    (tmp_path / "config.toml").write_text("workers = \n")
    with pytest.raises(ConfigurationError, match="invalid TOML"):
        load_settings()
