"""Automated labeling: held items, rounds, the threshold holding the target accuracy on
held-out truth, provenance of every label, the budget, and rounds that are safe to repeat
(SQLite and PostgreSQL where the database matters)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from loopworks.errors import ConfigurationError, InputError
from loopworks.labeling.autolabel import AutoLabeler, batch_size, model_name
from loopworks.labeling.jobs import JobSpec, JobStatus, LabelingJobs
from loopworks.labeling.output import write_output
from loopworks.labeling.schema import ItemState, auto_items, auto_rounds, items, machine_labels
from loopworks.labeling.simulate import simulate
from loopworks.metadata import open_engine
from loopworks.models import ModelRegistry
from loopworks.samples import generate_reviews

LABELS = ["negative", "neutral", "positive"]
TARGET = 0.95
#: Machine labels are measured on a finite sample: the threshold is chosen so that a 95%
#: lower bound on the validation accuracy reaches the target, and the labeled items are a
#: few hundred to a thousand, so their accuracy may fall a little below it by chance.
TOLERANCE = 0.02


def reviews(n: int, seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    """Generated reviews as (text, fields) items with the truth from the star rating."""
    table = generate_reviews(n, seed=seed, broken=False).to_pandas()
    out = []
    for i, (text, stars) in enumerate(zip(table.review_body, table.star_rating, strict=True)):
        truth = LABELS[0] if stars <= 2 else LABELS[1] if stars == 3 else LABELS[2]
        out.append((text, {"source": text, "review_id": f"r{i}", "truth": truth}))
    return out


@pytest.fixture
def jobs(labeling_jobs: LabelingJobs) -> LabelingJobs:
    return labeling_jobs

@pytest.fixture
def sqlite_jobs(tmp_path: Path) -> LabelingJobs:
    jobs = LabelingJobs(open_engine(f"sqlite:///{tmp_path / 'meta.db'}"))
    jobs.workforce.add_team("nlp")
    return jobs


def states(jobs: LabelingJobs, job: str) -> dict[int, int]:
    with jobs.engine.connect() as conn:
        job_id = jobs.job_row(conn, job).id
        return dict(conn.execute(sa.select(items.c.id, items.c.state).where(
            items.c.job_id == job_id)).all())


def test_the_threshold_holds_the_target_on_held_out_truth(sqlite_jobs: LabelingJobs,
                                                          tmp_path: Path) -> None:
    """End to end: simulated workers label what they are given, the rounds run until the
    job completes, and the machine labels are compared with the known truth. (SQLite only:
    the rounds' claims and writes meet PostgreSQL in the race test below.)"""
    jobs = sqlite_jobs
    data = reviews(1500)
    truth = {d["review_id"]: d["truth"] for _, d in data}
    jobs.create_job(JobSpec("auto", "nlp", LABELS, auto_label={"target_accuracy": TARGET}),
                    data)
    reports: list[Any] = []
    given = simulate(jobs, "auto", [0.98], on_round=reports.append)
    spec = jobs.job("auto")
    counts = spec.counts
    assert spec.status is JobStatus.COMPLETED
    assert counts["total"] == counts["items"] == 1500 and counts["held"] == 0
    assert counts["human-labeled"] + counts["machine-labeled"] == 1500
    assert counts["human-labeled"] == given  # one worker per item
    assert counts["machine-labeled"] > 500  # the model did a real share of the work

    # Provenance: every label in the output says who made it.
    summary = write_output(jobs, "auto", tmp_path / "out")
    lines = [json.loads(x) for x in Path(summary["manifest"]).read_text().splitlines()]
    assert len(lines) == summary["labeled"] == 1500
    machine = [x for x in lines if x["auto-metadata"]["human-annotated"] == "no"]
    human = [x for x in lines if x["auto-metadata"]["human-annotated"] == "yes"]
    assert len(machine) == counts["machine-labeled"] and len(human) == counts["human-labeled"]
    for x in machine:
        meta = x["auto-metadata"]
        assert meta["loopworks"]["model-version"].startswith(f"{model_name('auto')}:")
        assert meta["type"] == "groundtruth/text-classification"
        assert meta["job-name"] == "labeling-job/auto"
        assert LABELS[x["auto"]] == meta["class-name"]
        assert 0 < meta["confidence"] <= 1 and meta["loopworks"]["auto-label-round"] >= 1
        assert "worker-count" not in meta["loopworks"]
    assert all(x["auto-metadata"]["loopworks"]["worker-count"] == 1 for x in human)

    # The machine labels reach the target on the truth they never saw.
    right = sum(x["auto-metadata"]["class-name"] == truth[x["review_id"]] for x in machine)
    assert right / len(machine) >= TARGET - TOLERANCE, (right, len(machine))

    # The rounds are recorded, each with its threshold and the accuracy it was chosen for.
    rounds = AutoLabeler(jobs).rounds("auto")
    assert [r.to_dict() for r in rounds] == [r.to_dict() for r in reports]
    assert [r.round for r in rounds] == list(range(1, len(rounds) + 1))
    assert sum(r.machine_labels for r in rounds) == counts["machine-labeled"]
    assert rounds[-1].held_left == 0
    first = rounds[0]
    assert first.human_labels == 300 + 150  # 20% validation + the first training sample
    assert first.threshold is not None and first.validation_accuracy is not None
    assert first.validation_accuracy >= TARGET and first.lower_bound >= TARGET
    assert first.validation_pool == 300 and first.validation_items >= 20
    for r in rounds:
        if r.threshold is None:
            assert r.machine_labels == 0
    # Each round's model is in the registry under the version its labels name.
    registry = ModelRegistry()
    versions = registry.versions(model_name("auto"))
    assert len(versions) == len(rounds)
    for r in rounds:
        assert r.model_version is not None
        model = registry.load(*r.model_version.split(":")[:1], int(r.model_version.split(":")[1]))
        assert list(model.classes) == LABELS


def test_held_items_are_never_handed_out(jobs: LabelingJobs) -> None:
    jobs.create_job(JobSpec("held", "nlp", LABELS, auto_label={"seed": 3}), reviews(1300))
    before = states(jobs, "held")
    held = {i for i, s in before.items() if s == ItemState.HELD}
    assert len(held) == 1300 - 260 - 130  # 20% validation, then 10% for training
    assert jobs.job("held").counts["held"] == len(held)
    worker = jobs.workforce.add_worker("ana", teams_=["nlp"])
    handed = []
    while (task := jobs.next_task("held", worker)) is not None:
        handed.append(task.item_id)
    assert len(handed) == len(set(handed)) == 390 and not held & set(handed)
    # The job is still in progress: held items wait for the round, they do not complete it.
    for item_id in handed:
        jobs.submit("held", item_id, worker, "positive")
    spec = jobs.job("held")
    assert spec.status is JobStatus.IN_PROGRESS and spec.counts["unlabeled"] == len(held)
    with jobs.engine.connect() as conn:
        roles = dict(conn.execute(sa.select(auto_items.c.role, sa.func.count()).group_by(
            auto_items.c.role)).all())
    assert roles == {"validation": 260, "training": 130}


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="text-classification jobs only"):
        JobSpec("x", "nlp", LABELS, task_type="image-classification", auto_label={})
    with pytest.raises(ConfigurationError, match="target_accuracy"):
        JobSpec("x", "nlp", LABELS, auto_label={"target_accuracy": 1.0})
    with pytest.raises(ConfigurationError, match="unknown auto_label"):
        JobSpec("x", "nlp", LABELS, auto_label={"treshold": 0.9})
    with pytest.raises(ConfigurationError, match="budget"):
        JobSpec("x", "nlp", LABELS, auto_label={"budget": 0})
    with pytest.raises(ConfigurationError, match="assurance must be in"):
        JobSpec("x", "nlp", LABELS, auto_label={"assurance": 1.0})
    for bad in (0.5, 1.2, True, "0.9"):
        with pytest.raises(ConfigurationError, match="annotator_accuracy must be in"):
            JobSpec("x", "nlp", LABELS, auto_label={"annotator_accuracy": bad})
    spec = JobSpec("x", "nlp", LABELS, auto_label={})
    assert spec.auto_label == {"target_accuracy": 0.95, "batch_size": None, "budget": None,
                               "diversity": False, "seed": 0, "annotator_accuracy": None,
                               "features": "word+char", "assurance": 0.95}
    assert batch_size(spec, 1500) == 100 and batch_size(spec, 10_000) == 500


def test_fewer_than_1250_items_is_a_clear_error(sqlite_jobs: LabelingJobs) -> None:
    with pytest.raises(ConfigurationError, match="at least 1250 items.*has 1249"):
        sqlite_jobs.create_job(JobSpec("small", "nlp", LABELS, auto_label={}), reviews(1249))
    with pytest.raises(ConfigurationError, match="budget of 100 human-labeled items cannot"):
        sqlite_jobs.create_job(JobSpec("poor", "nlp", LABELS, auto_label={"budget": 100}),
                               reviews(1300))
    assert [s.name for s in sqlite_jobs.jobs_for(sqlite_jobs.workforce.add_worker(
        "root", role="admin"))] == []  # nothing half-created


def test_the_budget_caps_human_labels(sqlite_jobs: LabelingJobs, tmp_path: Path) -> None:
    """With a budget just above the first sample and a demanding target, people label
    at most the budget; what the model is still unsure of fails with the reason."""
    jobs = sqlite_jobs
    jobs.create_job(JobSpec("capped", "nlp", LABELS, auto_label={
        "target_accuracy": 0.99, "budget": 450, "batch_size": 50}), reviews(1300))
    simulate(jobs, "capped", [0.9])
    counts = jobs.job("capped").counts
    assert jobs.job("capped").status is JobStatus.COMPLETED
    assert counts["human-labeled"] <= 450 and counts["answers"] <= 450
    assert counts["failed"] > 0 and counts["held"] == 0
    assert counts["human-labeled"] + counts["machine-labeled"] + counts["failed"] == 1300
    rounds = AutoLabeler(jobs).rounds("capped")
    assert rounds[-1].failed == counts["failed"]
    lines = [json.loads(x) for x in Path(write_output(jobs, "capped", tmp_path / "o")[
        "manifest"]).read_text().splitlines()]
    failed = [x for x in lines if "failure-reason" in x["capped-metadata"]]
    assert len(failed) == counts["failed"]
    assert "budget of 450 human-labeled items is spent" in failed[0]["capped-metadata"][
        "failure-reason"] and "capped" not in failed[0]


def test_advance_is_safe_to_repeat_and_to_race(jobs: LabelingJobs) -> None:
    jobs.create_job(JobSpec("race", "nlp", LABELS, auto_label={}), reviews(1300))
    labeler = AutoLabeler(jobs)
    assert labeler.advance("race") is None and not labeler.due("race")  # items still open
    worker = jobs.workforce.add_worker("ana", teams_=["nlp"])
    while (task := jobs.next_task("race", worker)) is not None:
        jobs.submit("race", task.item_id, worker, task.data["truth"])
    assert labeler.due("race")
    results: list[Any] = []

    def go() -> None:
        results.append(AutoLabeler(jobs).advance("race"))

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0].round == 1
    assert labeler.advance("race") is None  # the next batch is open for people now
    assert [r.round for r in labeler.rounds("race")] == [1]
    with jobs.engine.connect() as conn:
        n_machine = conn.execute(sa.select(sa.func.count()).select_from(machine_labels)
                                 ).scalar_one()
    assert n_machine == done[0].machine_labels == jobs.job("race").counts["machine-labeled"]


def test_a_claim_left_by_a_dead_process_is_taken_over(sqlite_jobs: LabelingJobs) -> None:
    jobs = sqlite_jobs
    jobs.create_job(JobSpec("stale", "nlp", LABELS, auto_label={}), reviews(1300))
    worker = jobs.workforce.add_worker("ana", teams_=["nlp"])
    while (task := jobs.next_task("stale", worker)) is not None:
        jobs.submit("stale", task.item_id, worker, task.data["truth"])
    with jobs.engine.begin() as conn:
        job_id = jobs.job_row(conn, "stale").id
        conn.execute(auto_rounds.insert().values(
            job_id=job_id, round=1, state="running", token="dead",
            started_at=datetime.now(UTC) - timedelta(seconds=30)))
    assert AutoLabeler(jobs).advance("stale") is None  # still fresh: someone is on it
    report = AutoLabeler(jobs, stale_seconds=10).advance("stale")
    assert report is not None and report.round == 1


def test_items_added_later_are_held_and_a_deadline_fails_them(
        sqlite_jobs: LabelingJobs) -> None:
    jobs = sqlite_jobs
    jobs.create_job(JobSpec("late", "nlp", LABELS, auto_label={}), reviews(1300))
    assert jobs.add_items("late", ["one more review"]) == 1
    assert jobs.job("late").counts["held"] == 1300 - 390 + 1
    jobs.expire_due(datetime.now(UTC) + timedelta(days=11))
    spec = jobs.job("late")
    assert spec.status is JobStatus.FAILED and spec.counts["held"] == 0
    assert spec.counts["failed"] == 1301


def test_a_non_auto_job_cannot_advance(sqlite_jobs: LabelingJobs) -> None:
    sqlite_jobs.create_job(JobSpec("plain", "nlp", LABELS), ["a", "b"])
    with pytest.raises(ConfigurationError, match="not created with automated labeling"):
        AutoLabeler(sqlite_jobs).advance("plain")
    assert "held" not in sqlite_jobs.job("plain").counts


def test_cli_auto_label_simulate_rounds_and_export(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from loopworks.cli import main

    path = tmp_path / "input.manifest"
    path.write_text("".join(json.dumps(d) + "\n" for _, d in reviews(1300, seed=5)))
    home = ["--home", str(tmp_path / "home")]
    run = CliRunner().invoke
    assert run(main, ["team", "add", "nlp", *home]).exit_code == 0
    small = tmp_path / "small.manifest"
    small.write_text("".join(path.read_text().splitlines(keepends=True)[:100]))
    refused = run(main, ["label", "create-job", "tiny", "--manifest", str(small), "--team",
                         "nlp", "--labels", ",".join(LABELS), "--auto-label", *home])
    assert refused.exit_code != 0 and "at least 1250 items" in refused.output
    made = run(main, ["label", "create-job", "sent", "--manifest", str(path), "--team", "nlp",
                      "--labels", ",".join(LABELS), "--auto-label", "--target-accuracy",
                      "0.95", "--batch-size", "100", "--diversity",
                      "--annotator-accuracy", "0.98", *home])
    assert made.exit_code == 0 and "people label a random 390 items first" in made.output, \
        made.output
    sim = run(main, ["label", "simulate", "sent", "--accuracy", "0.98", *home])
    assert sim.exit_code == 0 and "round 1:" in sim.output, sim.output
    status = json.loads(run(main, ["label", "status", "sent", *home]).output)
    assert status["status"] == "Completed" and status["machine-labeled"] > 0
    assert status["auto_label"]["diversity"] is True and status["rounds"][0]["round"] == 1
    assert status["auto_label"]["annotator_accuracy"] == 0.98
    assert status["rounds"][0]["annotator_accuracy"] == 0.98
    shown = run(main, ["label", "rounds", "sent", *home])
    assert shown.exit_code == 0 and "threshold" in shown.output, shown.output
    assert "machine-labeled" in shown.output and "0.980" in shown.output
    wrong = run(main, ["label", "create-job", "odd", "--manifest", str(path), "--team", "nlp",
                       "--labels", ",".join(LABELS), "--auto-label", "--annotator-accuracy",
                       "0.4", *home])
    assert wrong.exit_code != 0 and "annotator_accuracy must be in (0.5, 1]" in wrong.output
    rounds = json.loads(run(main, ["label", "rounds", "sent", "--json", *home]).output)
    assert sum(r["machine_labels"] for r in rounds) == status["machine-labeled"]
    # Each round says what it cost: training and running its model took CPU time.
    assert all(r["cpu_seconds"] > 0 and r["seconds"] > 0 for r in rounds)
    assert "CPU s" in shown.output
    assert "no round due" in run(main, ["label", "advance", "sent", *home]).output
    out = tmp_path / "out"
    exported = run(main, ["label", "export", "sent", "--out", str(out), "--feature-group",
                          "sentiment_labels", "--id-field", "review_id", *home])
    assert exported.exit_code == 0 and "1,300 of 1,300 items labeled" in exported.output, \
        exported.output
    from loopworks.featurestore import FeatureStore

    lines = [json.loads(x) for x in
             (out / "manifests" / "output" / "output.manifest").read_text().splitlines()]
    by_machine = next(x for x in lines if x["sent-metadata"]["human-annotated"] == "no")
    with FeatureStore(home=tmp_path / "home") as store:
        record = store.feature_group("sentiment_labels").get_record(by_machine["review_id"])
    assert record["human_annotated"] is False and record["workers"] == 0
    made_by = by_machine["sent-metadata"]["loopworks"]["model-version"]
    assert record["method"] == f"auto-label {made_by}"


def test_later_thresholds_count_what_earlier_rounds_labeled() -> None:
    import numpy as np

    from loopworks.labeling.activelearning import choose_threshold

    sure = np.full(30, 0.9)
    assert choose_threshold(sure, np.ones(30, bool), TARGET).value is None  # 30 are too few
    chosen = choose_threshold(sure, np.ones(30, bool), TARGET, prior_items=200,
                              prior_correct=198)
    assert chosen.value == 0.9 and chosen.validation_items == 230
    assert chosen.validation_accuracy == pytest.approx(228 / 230)
    # A big margin from earlier rounds never buys labels worse than the target.
    shaky = np.r_[np.ones(6, bool), np.zeros(4, bool)]
    assert choose_threshold(np.full(10, 0.8), shaky, TARGET, prior_items=5000,
                            prior_correct=5000).value is None


def test_gold_items_measure_the_people_so_their_mistakes_do_not_count_against_the_model(
        tmp_path: Path) -> None:
    """A worker right 90% of the time judges the model: without gold answers the model must
    agree with people 95% of the time, which a model right 97% of the time cannot show, so
    the machine labels little. With gold items the job measures the worker, allows for its
    mistakes, and the model labels far more, still at the target against the truth."""
    data = reviews(2000, seed=5)
    truth = {d["review_id"]: d["truth"] for _, d in data}
    gold_ids = {d["review_id"] for _, d in data[:300]}
    with_gold = [(text, {**d, "gold": d["truth"]} if d["review_id"] in gold_ids else d)
                 for text, d in data]
    machine_share = {}
    for name, items_ in (("plain", data), ("gold", with_gold)):
        jobs = LabelingJobs(open_engine(f"sqlite:///{tmp_path / name}.db"))
        jobs.workforce.add_team("nlp")
        jobs.create_job(JobSpec(name, "nlp", LABELS, auto_label={"target_accuracy": TARGET}),
                        items_)
        if name == "gold":  # every gold item is in the first validation sample
            with jobs.engine.connect() as conn:
                job_id = jobs.job_row(conn, name).id
                roles = dict(conn.execute(sa.select(items.c.data, auto_items.c.role).join(
                    auto_items, auto_items.c.item_id == items.c.id).where(
                    items.c.job_id == job_id)).all())
            assert sorted(json.loads(d)["review_id"] for d, role in roles.items()
                          if role == "validation" and "gold" in json.loads(d)) == \
                sorted(gold_ids)
        simulate(jobs, name, [0.9], seed=3)
        rounds = AutoLabeler(jobs).rounds(name)
        first = rounds[0]
        if name == "plain":
            assert first.annotator_accuracy == 1.0 and first.gold_answers == 0
        else:  # measured on the 300 gold answers: the upper end of a 95% interval
            assert first.gold_answers == 300
            assert 0.9 < first.annotator_accuracy < 0.95
        summary = write_output(jobs, name, tmp_path / name)
        lines = [json.loads(x) for x in Path(summary["manifest"]).read_text().splitlines()]
        machine = [x for x in lines if x[f"{name}-metadata"]["human-annotated"] == "no"]
        machine_share[name] = len(machine) / len(lines)
        if machine:
            right = sum(x[f"{name}-metadata"]["class-name"] == truth[x["review_id"]]
                        for x in machine)
            assert right / len(machine) >= TARGET - TOLERANCE, (name, right, len(machine))
    assert machine_share["gold"] > machine_share["plain"] + 0.2, machine_share


def test_a_gold_answer_that_is_not_a_label_is_refused(sqlite_jobs: LabelingJobs) -> None:
    data = reviews(1300)
    data[41][1]["gold"] = "positve"
    with pytest.raises(InputError, match="item 42: gold answer 'positve' is not one of"):
        sqlite_jobs.create_job(JobSpec("typo", "nlp", LABELS, auto_label={}), data)
    data[41][1]["gold"] = 2  # an index is a label too
    assert sqlite_jobs.create_job(JobSpec("typo", "nlp", LABELS, auto_label={}),
                                  data).counts["items"] == 1300


def test_an_embedding_model_without_the_extra_is_refused_at_creation(
        sqlite_jobs: LabelingJobs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for embeddings on a machine without PyTorch fails when the job is created,
    with the install command, not minutes later in the first round."""
    import importlib.util

    from loopworks.errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="torch==2.13.0"):
        sqlite_jobs.create_job(JobSpec("emb", "nlp", LABELS,
                                       auto_label={"features": "word+char+embedding"}),
                               reviews(1300))
    from loopworks.errors import NotFoundError

    with pytest.raises(NotFoundError):
        sqlite_jobs.job("emb")  # nothing half-created
    assert sqlite_jobs.create_job(JobSpec("plain", "nlp", LABELS, auto_label={}),
                                  reviews(1300)).counts["items"] == 1300
