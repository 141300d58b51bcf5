"""`loopworks fs ...` as a user runs it, on processed sample reviews."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from loopworks.cli import main


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_feature_store_commands(tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    invoke("sample", "reviews", "--rows", "300", "--out", str(data))
    out = tmp_path / "features"
    assert invoke("process", str(data), "--out", str(out), "--workers", "1", "-q").exit_code == 0
    created = invoke("fs", "create", "reviews", "--from", str(out / "train"), "--record-id",
                     "review_id", "--event-time", "date", "--tag", "team=nlp", "--description",
                     "sample reviews", "--ingest")
    assert created.exit_code == 0, created.output
    assert "ingested" in created.output
    assert invoke("fs", "ingest", "reviews", str(out / "test")).exit_code == 0
    listed = json.loads(invoke("fs", "list", "--json").output)
    assert [g["name"] for g in listed] == ["reviews"] and listed[0]["tags"] == {"team": "nlp"}
    described = json.loads(invoke("fs", "describe", "reviews").output)
    types = {f["name"]: f["type_name"] for f in described["features"]}
    assert types["input_ids"] == "List<int32>[128]"
    assert "reviews:input_ids" in invoke("fs", "search", "int32").output
    rid = pq.read_table(next((out / "train").glob("*.parquet"))).column("review_id")[0].as_py()
    record = json.loads(invoke("fs", "get", "reviews", rid, "--feature", "sentiment").output)
    assert record["review_id"] == rid and "input_ids" not in record
    result = tmp_path / "counts.csv"
    query = invoke("fs", "query", "SELECT split_type, count(*) AS n FROM reviews GROUP BY 1",
                   "--out", str(result))
    assert query.exit_code == 0 and "rows" in query.output
    assert result.read_text().splitlines()[0] == '"split_type","n"'
    assert "deleted" in invoke("fs", "delete-record", "reviews", rid).output
    assert json.loads(invoke("fs", "get", "reviews", rid).output) is None
    assert invoke("fs", "optimize", "reviews").exit_code == 0
    bad = invoke("fs", "query", "SELECT nope FROM reviews")
    assert bad.exit_code == 2 and "SQL error" in bad.output
    assert invoke("fs", "delete", "reviews", "--yes").exit_code == 0
    gone = invoke("fs", "describe", "reviews")
    assert gone.exit_code == 2 and "no feature group" in gone.output
