"""Query results written as CSV (``csv_safe``): lists as JSON text, and text that a
spreadsheet would run as a formula neutralised, numbers left alone."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.featurestore import FeatureStore
from loopworks.featurestore.sql import csv_safe

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+2", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]
PLAIN = ["fine", "a = b", "1-2", "'quoted", "", None]


def test_text_starting_like_a_formula_gets_a_quote() -> None:
    text = FORMULAS + PLAIN
    table = pa.table({
        "text": pa.array(text, pa.string()),
        "large": pa.array(text, pa.large_string()),
        "view": pa.array(text, pa.string_view()),
        "category": pa.array(text, pa.string()).dictionary_encode(),
        "number": pa.array([-1, -2, 3, -4, 5, 6, 7, 8, 9, 10, 11, None], pa.int64()),
        "ratio": pa.array([-0.5] * 12, pa.float64()),
        "ids": pa.array([[-1, 2]] * 11 + [None], pa.list_(pa.int32())),
    })
    safe = csv_safe(table)
    assert safe.column_names == table.column_names
    expected = ["'" + f for f in FORMULAS] + PLAIN
    for name in ["text", "large", "view", "category"]:
        assert safe.column(name).to_pylist() == expected, name
    assert safe.column("number").equals(table.column("number"))  # numbers stay numbers
    assert safe.column("ratio").equals(table.column("ratio"))
    assert safe.column("ids").to_pylist() == ["[-1, 2]"] * 11 + [None]


def test_fs_query_out_csv_neutralises_formulas(tmp_path: Path) -> None:
    home = tmp_path / "home"
    notes = pa.table({
        "note_id": ["n1", "n2", "n3"],
        "date": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * 3, pa.timestamp("us", "UTC")),
        "body": ["=cmd|' /C calc'!A0", "-10 is the score", "plain"],
        "score": pa.array([-10, 0, 5], pa.int64()),
    })
    with FeatureStore(home=home) as store:
        store.create_feature_group("notes", record_id="note_id", event_time="date",
                                   df=notes).ingest(notes)
    out = tmp_path / "notes.csv"
    result = CliRunner().invoke(main, [
        "fs", "query", "SELECT note_id, body, score, score * 1.5 AS scaled FROM notes "
        "ORDER BY note_id", "--out", str(out), "--home", str(home)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert [r["body"] for r in rows] == ["'=cmd|' /C calc'!A0", "'-10 is the score", "plain"]
    assert [r["score"] for r in rows] == ["-10", "0", "5"]
    assert [float(r["scaled"]) for r in rows] == [-15.0, 0.0, 7.5]
    assert '"note_id","body","score","scaled"' == out.read_text().splitlines()[0]
