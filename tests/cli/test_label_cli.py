"""`loopworks label consolidate` on real crowd data with gold."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from loopworks.cli import main

from conftest import SHARED, needs_shared

PRODUCT = SHARED / "crowd" / "product"


@needs_shared(PRODUCT)
def test_consolidate_answers_table_with_gold(tmp_path: Path) -> None:
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(main, [
        "label", "consolidate", str(PRODUCT / "answers.csv"), "--item-column", "question",
        "--label-column", "answer", "--gold", str(PRODUCT / "truth.csv"), "--out", str(out),
        "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["items"] == 8_315 and round(summary["gold_accuracy"], 3) >= 0.940
    labels = pd.read_parquet(out)
    assert len(labels) == 8_315 and labels["confidence"].between(0, 1).all()
    vote = CliRunner().invoke(main, [
        "label", "consolidate", str(PRODUCT / "answers.csv"), "--item-column", "question",
        "--label-column", "answer", "--gold", str(PRODUCT / "truth.csv"), "--method",
        "majority-vote", "--json"])
    assert json.loads(vote.output)["gold_accuracy"] < summary["gold_accuracy"]


def test_missing_column_is_a_clean_error(tmp_path: Path) -> None:
    answers = tmp_path / "a.csv"
    answers.write_text("item,worker,label\n1,w1,a\n")
    result = CliRunner().invoke(main, ["label", "consolidate", str(answers),
                                       "--label-column", "answer"])
    assert result.exit_code == 2 and "answer" in result.output and "a.csv" in result.output
