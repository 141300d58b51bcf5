"""`loopworks review ...` against a real SQLite home: flows, single loops, batch runs from a
predictions file (idempotent when repeated), and clean errors for bad files, columns and
JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from loopworks.cli import main

LABELS = ["negative", "neutral", "positive"]
LOW_CONFIDENCE = {"Conditions": [{
    "ConditionType": "ClassificationConfidenceCheck",
    "ConditionParameters": {"ClassificationLabel": "*", "ConfidenceLessThan": 0.7}}]}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home with a team of two reviewers and a flow asking people below 0.7."""
    home = tmp_path / "home"
    monkeypatch.setenv("LOOPWORKS_HOME", str(home))
    monkeypatch.delenv("LOOPWORKS_DATABASE_URL", raising=False)
    for args in (["team", "add", "reviewers"],
                 ["worker", "add", "rita", "--role", "reviewer", "--team", "reviewers"],
                 ["worker", "add", "rob", "--role", "reviewer", "--team", "reviewers"]):
        ok(args)
    conditions = tmp_path / "conditions.json"
    conditions.write_text(json.dumps(LOW_CONFIDENCE))
    ok(["review", "flow", "create", "sentiment-check", "--team", "reviewers", "--labels",
        ",".join(LABELS), "--output", str(tmp_path / "a2i"), "--title", "Check the sentiment",
        "--conditions", f"@{conditions}"])
    return home


def cli(args: list[str]) -> Result:
    return CliRunner().invoke(main, args)


def ok(args: list[str]) -> Result:
    result = cli(args)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def fails(args: list[str], *needles: str) -> Result:
    result = cli(args)
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}: {result.output}"
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, f"{needle!r} not in {result.output!r}"
    return result


def content(text: str, *probs: float) -> str:
    return json.dumps({"text": text, "probabilities": dict(zip(LABELS, probs, strict=True))})


def predictions(n: int = 60, seed: int = 3) -> pd.DataFrame:
    """A `loopworks predict`-shaped table: input columns plus prediction columns."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.6, 0.4, 1.2], n)
    frame = pd.DataFrame({
        "review_id": [f"r{i:04d}" for i in range(n)],
        "review_body": [f"Review number {i}: the fabric is {'soft' if i % 2 else 'thin'}"
                        for i in range(n)],
        "star_rating": rng.integers(1, 6, n),
        "review_date": pd.to_datetime("2024-03-01") + pd.to_timedelta(np.arange(n), "D"),
        "prediction": np.array(LABELS)[probs.argmax(axis=1)],
        "confidence": probs.max(axis=1)})
    for j, label in enumerate(LABELS):
        frame[f"prob_{label}"] = probs[:, j]
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True, date_format="iso")
    return path


def answer(worker: str, label: str) -> None:
    import loopworks

    jobs = loopworks.open().labeling
    me = jobs.workforce.worker(worker)
    task = jobs.next_task("review-sentiment-check", me)
    assert task is not None
    jobs.submit("review-sentiment-check", task.item_id, me, label)


# ------------------------------------------------------------------------------ flows
def test_flow_create_list_describe_delete(home: Path, tmp_path: Path) -> None:
    listed = json.loads(ok(["review", "flow", "list", "--json"]).output)
    assert [f["name"] for f in listed] == ["sentiment-check"]
    described = json.loads(ok(["review", "flow", "describe", "sentiment-check"]).output)
    assert described["activation_conditions"] == LOW_CONFIDENCE
    assert described["labels"] == LABELS and described["job"] == "review-sentiment-check"
    assert described["output"] == str((tmp_path / "a2i").resolve())
    assert "sentiment-check" in ok(["review", "flow", "list"]).output
    fails(["review", "flow", "create", "sentiment-check", "--team", "reviewers", "--labels",
           "a,b", "--output", str(tmp_path)], "already exists")

    template = tmp_path / "mine.html"
    template.write_text("<p>{{ task.source }}</p>")
    ok(["review", "flow", "create", "custom", "--team", "reviewers", "--labels", "yes,no",
        "--output", str(tmp_path / "out"), "--template", f"@{template}", "--task-count", "3",
        "--time-limit", "120", "--lifetime", "3600", "--webhook", "http://127.0.0.1:9/hook",
        "--webhook-secret", "s3cret"])
    custom = json.loads(ok(["review", "flow", "describe", "custom"]).output)
    assert custom["template"].startswith("(custom Jinja2 template")
    assert (custom["task_count"], custom["time_limit_seconds"],
            custom["availability_lifetime_seconds"]) == (3, 120, 3600)
    assert custom["activation_conditions"] is None and custom["webhook_secret"] == "***"
    assert custom["webhooks"] == ["http://127.0.0.1:9/hook"]

    assert "deleted flow 'custom'" in ok(["review", "flow", "delete", "custom"]).output
    fails(["review", "flow", "describe", "custom"], "no flow definition 'custom'")
    fails(["review", "flow", "delete", "custom"], "no flow definition 'custom'")


def test_flow_create_refuses_bad_conditions_and_templates(home: Path, tmp_path: Path) -> None:
    base = ["review", "flow", "create", "other", "--team", "reviewers", "--labels",
            ",".join(LABELS), "--output", str(tmp_path / "out")]
    fails([*base, "--conditions", "{not json"], "--conditions", "not valid JSON")
    fails([*base, "--conditions", f"@{tmp_path / 'nope.json'}"], "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    fails([*base, "--conditions", f"@{bad}"], "bad.json", "not valid JSON")
    fails([*base, "--conditions", json.dumps({"Conditions": [
        {"ConditionType": "Vibes", "ConditionParameters": {}}]})],
        "Conditions[0].ConditionType")
    fails([*base, "--conditions", json.dumps({"Conditions": [{
        "ConditionType": "ClassificationConfidenceCheck",
        "ConditionParameters": {"ClassificationLabel": "happy", "ConfidenceLessThan": 0.5}}]})],
        "ClassificationLabel", "'happy' is not one of the classes")
    fails([*base, "--template", "fancy"], "--template", "classification-review")
    fails([*base, "--template", f"@{tmp_path / 'missing.html'}"], "missing.html")
    fails([*base, "--task-count", "0"], "task count")
    fails(["review", "flow", "create", "Bad Name", *base[4:]], "invalid flow name")
    fails([*base[:5], "nobody", *base[6:]], "nobody")
    assert [f["name"] for f in json.loads(ok(["review", "flow", "list", "--json"]).output)] \
        == ["sentiment-check"]  # nothing half-made


# ------------------------------------------------------------------------------ loops
def test_start_describe_list_stop_delete_and_summary(home: Path, tmp_path: Path) -> None:
    flow = ["--flow", "sentiment-check"]
    sure = ok(["review", "start", "loop-sure", *flow, "--input",
               content("Love it", 0.02, 0.03, 0.95)])
    assert "no human loop" in sure.output and "no activation condition held" in sure.output
    started = ok(["review", "start", "loop-a", *flow, "--input",
                  content("It is okay I guess", 0.3, 0.45, 0.25)])
    assert "started human loop 'loop-a'" in started.output
    assert "Conditions[0] ClassificationConfidenceCheck" in started.output
    again = ok(["review", "start", "loop-a", *flow, "--input",
                content("It is okay I guess", 0.3, 0.45, 0.25)])
    assert "already exists (InProgress)" in again.output
    fails(["review", "start", "loop-a", *flow, "--input", content("else", 0.3, 0.4, 0.3)],
          "other input content")
    input_file = tmp_path / "input.json"
    input_file.write_text(content("Runs small", 0.5, 0.2, 0.3))
    as_json = json.loads(ok(["review", "start", "loop-b", *flow, "--input", f"@{input_file}",
                             "--json"]).output)
    assert as_json["started"] and as_json["loop"]["HumanLoopStatus"] == "InProgress"

    described = json.loads(ok(["review", "describe", "loop-a", *flow]).output)
    assert described["HumanLoopStatus"] == "InProgress"
    assert described["HumanLoopArn"] == "loopworks:human-loop/sentiment-check/loop-a"
    assert described["ActivationConditionsFired"] == [
        "Conditions[0] ClassificationConfidenceCheck"]

    answer("rita", "neutral")  # loop-a is first in the queue; task count 1 completes it
    done = json.loads(ok(["review", "describe", "loop-a", *flow]).output)
    assert done["HumanLoopStatus"] == "Completed"
    output = json.loads(Path(done["HumanLoopOutput"]["OutputUri"]).read_text())
    assert output["humanLoopName"] == "loop-a" and output["humanAnswers"][0]["workerId"] == "rita"

    page = json.loads(ok(["review", "list", *flow, "--max", "1", "--json"]).output)
    assert [s["HumanLoopName"] for s in page["HumanLoopSummaries"]] == ["loop-a"]
    rest = json.loads(ok(["review", "list", "--next-token", page["NextToken"],
                          "--json"]).output)
    assert [s["HumanLoopName"] for s in rest["HumanLoopSummaries"]] == ["loop-b"]
    assert rest["NextToken"] is None
    in_progress = json.loads(ok(["review", "list", "--status", "InProgress", "--json"]).output)
    assert [s["HumanLoopName"] for s in in_progress["HumanLoopSummaries"]] == ["loop-b"]
    future = json.loads(ok(["review", "list", "--created-after", "2999-01-01",
                            "--json"]).output)
    assert future["HumanLoopSummaries"] == []
    past = json.loads(ok(["review", "list", "--created-before", "2000-01-01T00:00:00Z",
                          "--json"]).output)
    assert past["HumanLoopSummaries"] == []
    table = ok(["review", "list"]).output
    assert "loop-a" in table and "Completed" in table
    fails(["review", "list", "--created-after", "yesterday"], "--created-after", "ISO 8601")
    fails(["review", "list", "--status", "Done"], "Done")
    fails(["review", "list", "--flow", "nope"], "no flow definition 'nope'")

    fails(["review", "delete", "loop-b", *flow], "only Failed, Completed or Stopped")
    fails(["review", "flow", "delete", "sentiment-check"], "loops in progress")
    assert "is Stopped" in ok(["review", "stop", "loop-b", *flow]).output
    fails(["review", "stop", "loop-b", *flow], "only loops in progress")
    assert "deleted human loop 'loop-b'" in ok(["review", "delete", "loop-b", *flow]).output
    fails(["review", "describe", "loop-b", *flow], "no human loop 'loop-b'")

    summary = json.loads(ok(["review", "summary", *flow]).output)
    assert summary["evaluated"] == 3 and summary["activated"] == 2
    assert summary["by_status"]["Completed"] == 1 and summary["reviewed"] == 1
    assert summary["model_accuracy_on_reviewed"] == 1.0
    assert "deleted flow" in ok(["review", "flow", "delete", "sentiment-check"]).output


def test_start_refuses_bad_input(home: Path, tmp_path: Path) -> None:
    flow = ["--flow", "sentiment-check"]
    fails(["review", "start", "x", *flow, "--input", "{oops"], "--input", "not valid JSON")
    fails(["review", "start", "x", *flow, "--input", "[1, 2]"], "JSON object")
    fails(["review", "start", "x", *flow, "--input", f"@{tmp_path / 'none.json'}"],
          "none.json")
    fails(["review", "start", "x", *flow, "--input", json.dumps({"text": "no model"})],
          "probabilities")
    fails(["review", "start", "x", *flow, "--input", content("t", 0.5, 0.5, 0.5)],
          "sum to 1")
    fails(["review", "start", "Not OK", *flow, "--input", content("t", 0.3, 0.3, 0.4)],
          "human loop name")
    fails(["review", "start", "x", "--flow", "nope", "--input", content("t", 0.3, 0.3, 0.4)],
          "no flow definition 'nope'")


# ------------------------------------------------------------------------------ batch
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_run_starts_loops_for_unsure_predictions_and_repeats_idempotently(
        home: Path, tmp_path: Path, suffix: str) -> None:
    frame = predictions(60)
    path = write(frame, tmp_path / f"predictions{suffix}")
    unsure = int((frame["confidence"] < 0.7).sum())
    assert 0 < unsure < 60
    args = ["review", "run", "--flow", "sentiment-check", "--predictions", str(path)]
    first = ok(args)
    assert "evaluated 60 predictions" in first.output
    assert f"sent to people: {unsure:,} ({unsure / 60:.1%}): {unsure} loops started, " \
           "0 already existed" in first.output
    assert "id column 'review_id'" in first.output
    report = json.loads(ok([*args, "--json"]).output)
    assert (report["evaluated"], report["started"], report["existing"],
            report["not_activated"]) == (60, 0, unsure, 60 - unsure)
    assert report["human_share"] == pytest.approx(unsure / 60)
    assert report["fired"] == {"Conditions[0] ClassificationConfidenceCheck": unsure}

    listed = json.loads(ok(["review", "list", "--flow", "sentiment-check", "--max", "1000",
                            "--json"]).output)["HumanLoopSummaries"]
    expected = frame.loc[frame["confidence"] < 0.7, "review_id"].tolist()
    assert sorted(s["HumanLoopName"] for s in listed) == sorted(expected)
    loop = json.loads(ok(["review", "describe", expected[0], "--flow",
                          "sentiment-check"]).output)
    assert loop["HumanLoopStatus"] == "InProgress"
    import loopworks

    stored = loopworks.open().review.describe_human_loop(expected[0], "sentiment-check")
    row = frame.set_index("review_id").loc[expected[0]]
    assert stored.input_content["text"] == row["review_body"]
    assert stored.input_content["review_id"] == expected[0]
    assert stored.input_content["probabilities"]["positive"] == pytest.approx(
        row["prob_positive"])
    assert str(stored.input_content["review_date"]).startswith("2024-03-")
    assert not any(k.startswith("prob_") for k in stored.input_content)


def test_run_names_loops_by_content_hash_and_prefix(home: Path, tmp_path: Path) -> None:
    frame = predictions(30).drop(columns=["review_id"])
    frame = pd.concat([frame, frame.iloc[[0, 1]]], ignore_index=True)  # exact repeats
    path = write(frame, tmp_path / "p.parquet")
    args = ["review", "run", "--flow", "sentiment-check", "--predictions", str(path),
            "--name-prefix", "Batch_7/", "--json"]
    first = json.loads(ok(args).output)
    assert first["naming"] == "content hash" and first["duplicates"] == 2
    assert first["evaluated"] == 30 and first["rows"] == 32
    again = json.loads(ok(args).output)
    assert again["started"] == 0 and again["existing"] == first["started"] > 0
    names = [s["HumanLoopName"] for s in json.loads(ok(
        ["review", "list", "--max", "1000", "--json"]).output)["HumanLoopSummaries"]]
    assert len(names) == first["started"]
    assert all(n.startswith("batch-7-") for n in names)


def test_run_with_an_id_column_that_needs_cleaning(home: Path, tmp_path: Path) -> None:
    frame = predictions(8)
    frame["sku"] = [f"SKU {i}/A" for i in range(8)]
    frame[["prob_negative", "prob_neutral", "prob_positive"]] = [0.5, 0.5, 0.0]  # all unsure
    path = write(frame, tmp_path / "p.csv")
    report = json.loads(ok(["review", "run", "--flow", "sentiment-check", "--predictions",
                            str(path), "--id-column", "sku", "--text-column", "review_body",
                            "--batch-size", "3", "--json"]).output)
    assert report["started"] == 8
    names = [s["HumanLoopName"] for s in json.loads(ok(
        ["review", "list", "--json"]).output)["HumanLoopSummaries"]]
    assert len(set(names)) == 8 and all(n.startswith("sku-") for n in names)


def test_run_reports_bad_files_and_columns(home: Path, tmp_path: Path) -> None:
    args = ["review", "run", "--flow", "sentiment-check", "--predictions"]
    frame = predictions(10)
    fails([*args, str(tmp_path / "missing.parquet")], "missing.parquet", "does not exist")
    no_prob = write(frame.drop(columns=["prob_neutral"]), tmp_path / "no-prob.parquet")
    fails([*args, str(no_prob)], "no-prob.parquet", "'prob_neutral'", "loopworks predict")
    fails([*args, str(write(frame, tmp_path / "p.parquet")), "--text-column", "body_text"],
          "p.parquet", "no text column 'body_text'")
    fails([*args, str(tmp_path / "p.parquet"), "--id-column", "nope"], "no id column 'nope'")
    no_text = write(frame.drop(columns=["review_body"]), tmp_path / "no-text.csv")
    fails([*args, str(no_text)], "no-text.csv", "no text column found")
    skewed = frame.copy()
    skewed.loc[[2, 5], "prob_positive"] += 0.3
    fails([*args, str(write(skewed, tmp_path / "skewed.parquet"))], "skewed.parquet",
          "do not sum to 1", "rows 2, 5")
    words = frame.astype({"prob_negative": str})
    words.loc[4, "prob_negative"] = "high"
    fails([*args, str(write(words, tmp_path / "words.csv"))], "words.csv", "'prob_negative'",
          "not numbers")
    blank = frame.copy()
    blank.loc[7, "review_body"] = "  "
    fails([*args, str(write(blank, tmp_path / "blank.parquet"))], "no text", "rows 7")
    twice = frame.copy()
    twice.loc[3, "review_id"] = twice.loc[1, "review_id"]
    fails([*args, str(write(twice, tmp_path / "twice.parquet"))], "'r0001'",
          "rows 1 and 3")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"review_body": "a", "prob_negative": 1}\n{not json\n')
    fails([*args, str(broken)], "broken.jsonl")
    fails(["review", "run", "--flow", "nope", "--predictions", str(tmp_path / "p.parquet")],
          "no flow definition 'nope'")
    assert json.loads(ok(["review", "list", "--json"]).output)["HumanLoopSummaries"] == []


def test_run_after_the_predictions_changed_says_to_use_another_prefix(
        home: Path, tmp_path: Path) -> None:
    frame = predictions(20)
    args = ["review", "run", "--flow", "sentiment-check", "--predictions"]
    ok([*args, str(write(frame, tmp_path / "v1.parquet"))])
    changed = frame.copy()
    changed["review_body"] = changed["review_body"] + " (edited)"
    fails([*args, str(write(changed, tmp_path / "v2.parquet"))], "other input content",
          "--name-prefix")
    report = json.loads(ok([*args, str(tmp_path / "v2.parquet"), "--name-prefix", "v2-",
                            "--json"]).output)
    assert report["existing"] == 0 and report["started"] > 0
