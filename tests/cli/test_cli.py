"""The command line, run as a user would (in-process through click's runner)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from loopworks.cli import main

from conftest import REAL_REVIEWS, ROBERTA, needs_shared


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_everywhere() -> None:
    top = invoke("--help")
    assert top.exit_code == 0
    for command in ("sample", "process", "profile", "jobs"):
        assert command in top.output
    for args in (["process"], ["profile"], ["jobs"], ["jobs", "list"], ["sample", "reviews"]):
        result = invoke(*args, "--help")
        assert result.exit_code == 0, result.output
    assert "--max-seq-length" in invoke("process", "--help").output


def test_sample_process_and_jobs(tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    assert invoke("sample", "reviews", "--rows", "500", "--out", str(data)).exit_code == 0
    out = tmp_path / "features"
    result = invoke("process", str(data), "--out", str(out), "--balance", "--workers", "1",
                    "--quiet")
    assert result.exit_code == 0, result.output
    assert "out: train" in result.output and "token lengths" in result.output
    report = json.loads((out / "report.json").read_text())
    listed = invoke("jobs", "list", "--json")
    assert [j["job_id"] for j in json.loads(listed.output)] == [report["job_id"]]
    described = json.loads(invoke("jobs", "describe", report["job_id"][:20]).output)
    assert described["counts"] == report["counts"]


def test_errors_are_clean_messages_not_tracebacks(tmp_path: Path) -> None:
    missing = invoke("process", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert missing.exit_code == 2
    assert "error:" in missing.output and "Traceback" not in missing.output
    bad_split = invoke("process", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o"),
                       "--split", "50,50")
    assert bad_split.exit_code == 2 and "--split" in bad_split.output
    unknown = invoke("jobs", "describe", "no-such-job")
    assert unknown.exit_code == 2 and "no job" in unknown.output


def test_profile_writes_table_and_histogram(tmp_path: Path) -> None:
    data = tmp_path / "reviews.parquet"
    invoke("sample", "reviews", "--rows", "400", "--out", str(data))
    png = tmp_path / "hist.png"
    result = invoke("profile", str(data), "--png", str(png), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert png.read_bytes()[:4] == b"\x89PNG"
    cover = summary["max_seq_length_covering"]
    assert cover["95%"] <= cover["99%"] <= cover["100%"] == summary["tokens"]["max"]
    by_len = {c["max_seq_length"]: c for c in summary["candidates"]}
    assert by_len[cover["100%"]]["share_truncated"] == 0
    assert by_len[32]["share_truncated"] > by_len[128]["share_truncated"]
    assert summary["words"]["p50"] < summary["tokens"]["p50"]


@needs_shared(REAL_REVIEWS)
@needs_shared(ROBERTA)
def test_profile_real_reviews_shows_what_128_cuts(tmp_path: Path) -> None:
    result = invoke("profile", str(REAL_REVIEWS), "--text-column", "Review Text",
                    "--tokenizer", str(ROBERTA), "--png", str(tmp_path / "p.png"), "--json")
    summary = json.loads(result.output)
    cost = {c["max_seq_length"]: c for c in summary["candidates"]}
    assert 0.03 < cost[128]["share_truncated"] < 0.04  # 3.3% of non-empty real reviews
    assert summary["texts"] == 22_641


def test_printed_paths_are_never_wrapped(tmp_path: Path, monkeypatch) -> None:
    """A narrow terminal and a long path: the path still comes out whole on one line, so
    it can be copied and pasted."""
    monkeypatch.setenv("COLUMNS", "40")
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    data = deep / "reviews.csv"
    assert invoke("sample", "reviews", "--rows", "300", "--out", str(data)).exit_code == 0
    out = deep / "features"
    result = invoke("process", str(data), "--out", str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    assert any(str(out) in line for line in result.output.splitlines()), result.output
