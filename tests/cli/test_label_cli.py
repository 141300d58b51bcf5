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


def test_create_job_from_a_feature_store_query(tmp_path: Path) -> None:
    import pyarrow as pa

    from loopworks.featurestore import FeatureStore

    home = tmp_path / "home"
    table = pa.table({"review_id": ["r1", "r2", "r3"], "review_body": ["good", "bad", "ok"],
                      "split_type": ["test", "test", "train"],
                      "date": pa.array([1_700_000_000_000_000] * 3, pa.timestamp("us", "UTC"))})
    with FeatureStore(home=home) as store:
        store.create_feature_group("reviews", record_id="review_id", event_time="date",
                                   df=table).ingest(table)
    runner = CliRunner()
    assert runner.invoke(main, ["team", "add", "nlp", "--home", str(home)]).exit_code == 0
    args = ["label", "create-job", "tests", "--team", "nlp", "--labels", "neg,pos",
            "--home", str(home)]
    made = runner.invoke(main, [*args, "--query", "SELECT review_id, review_body FROM "
                                "reviews_latest WHERE split_type = 'test' ORDER BY review_id"])
    assert made.exit_code == 0, made.output
    assert "2 items" in made.output
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata import database_url, open_engine

    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_worker("ana", teams_=["nlp"])
    task = jobs.next_task("tests", jobs.workforce.worker("ana"))
    assert task.source == "good" and task.data["review_id"] == "r1"
    wrong = runner.invoke(main, [*args, "--query", "SELECT review_id FROM reviews_latest"])
    assert wrong.exit_code != 0 and "no text column 'review_body'" in wrong.output
    both = runner.invoke(main, [*args, "--query", "SELECT 1", "--manifest", "x.jsonl"])
    assert both.exit_code != 0 and "either --manifest or --query" in both.output
