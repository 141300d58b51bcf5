"""Job lifecycle as in Ground Truth: statuses, counters, stop, adding items, deadlines."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopworks.errors import ConfigurationError, ConflictError
from loopworks.labeling.jobs import JobSpec, JobStatus, LabelingJobs
from loopworks.labeling.output import write_output

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def labeling(labeling_jobs: LabelingJobs) -> LabelingJobs:
    return labeling_jobs

def texts(n: int, start: int = 0) -> list[str]:
    return [f"review {i}" for i in range(start, start + n)]


def test_stop_waits_for_live_leases_then_stops(labeling: LabelingJobs) -> None:
    labeling.create_job(JobSpec("s", "nlp", LABELS, workers_per_item=2), texts(3))
    ana = labeling.workforce.add_worker("ana", teams_=["nlp"])
    bob = labeling.workforce.add_worker("bob", teams_=["nlp"])
    assert labeling.job("s").status is JobStatus.IN_PROGRESS
    held = labeling.next_task("s", ana)
    assert labeling.stop("s") is JobStatus.STOPPING
    assert labeling.stop("s") is JobStatus.STOPPING  # again: no change
    assert labeling.job("s").status is JobStatus.STOPPING
    assert labeling.next_task("s", bob) is None  # no new tasks while stopping
    labeling.submit("s", held.item_id, ana, "neutral")  # a live lease may still be answered
    assert labeling.job("s").status is JobStatus.STOPPED
    with pytest.raises(ConflictError, match="cannot go from Stopped to Stopped"):
        labeling.stop("s")
    counts = labeling.job("s").counts
    assert counts["answers"] == 1 and counts["unlabeled"] == 3 and counts["failed"] == 0
    with pytest.raises(ConflictError, match="is Stopped; items can only be added"):
        labeling.add_items("s", ["late"])


def test_stop_without_leases_is_immediate_and_submit_after_is_refused(
        labeling: LabelingJobs) -> None:
    labeling.create_job(JobSpec("s", "nlp", LABELS), texts(2))
    ana = labeling.workforce.add_worker("ana", teams_=["nlp"])
    task = labeling.next_task("s", ana)
    labeling.skip("s", task.item_id, ana)
    assert labeling.stop("s") is JobStatus.STOPPED
    with pytest.raises(ConflictError, match="is Stopped and takes no answers"):
        labeling.submit("s", task.item_id, ana, "neutral")


def test_add_items_to_a_running_job_then_complete(labeling: LabelingJobs) -> None:
    labeling.create_job(JobSpec("grow", "nlp", LABELS), texts(2))
    ana = labeling.workforce.add_worker("ana", teams_=["nlp"])
    first = labeling.next_task("grow", ana)
    labeling.submit("grow", first.item_id, ana, "positive")
    assert labeling.add_items("grow", texts(2, start=2)) == 2
    assert labeling.job("grow").counts["items"] == 4
    seen = [first.source]
    while (task := labeling.next_task("grow", ana)) is not None:
        seen.append(task.source)
        labeling.submit("grow", task.item_id, ana, "neutral")
    assert seen == texts(4)  # added items queue after the first ones, in order
    spec = labeling.job("grow")
    assert spec.status is JobStatus.COMPLETED
    assert spec.counts["total"] == spec.counts["human-labeled"] == 4
    with pytest.raises(ConflictError, match="is Completed"):
        labeling.add_items("grow", ["late"])


def test_items_nobody_finished_fail_at_the_lifetime_and_the_job_completes(
        labeling: LabelingJobs, tmp_path: Path) -> None:
    labeling.create_job(JobSpec("life", "nlp", LABELS, workers_per_item=2), texts(3))
    labeling.create_job(JobSpec("idle", "nlp", LABELS), texts(2))
    ana = labeling.workforce.add_worker("ana", teams_=["nlp"])
    bob = labeling.workforce.add_worker("bob", teams_=["nlp"])
    for worker in (ana, bob):  # item 0 gets both answers
        task = labeling.next_task("life", worker)
        labeling.submit("life", task.item_id, worker, "positive")
    partial = labeling.next_task("life", ana)  # item 1 gets one of two
    labeling.submit("life", partial.item_id, ana, "negative")
    labeling.next_task("life", ana)  # item 2: a lease nobody answers
    created = datetime.fromisoformat(labeling.job("life").created_at)
    assert labeling.expire_due(created + timedelta(days=9)) == {}
    changed = labeling.expire_due(created + timedelta(days=10, seconds=1))
    assert changed == {"life": "Completed", "idle": "Failed"}
    spec = labeling.job("life")
    assert spec.status is JobStatus.COMPLETED
    assert {k: spec.counts[k] for k in ("items", "total", "human-labeled",
                                         "machine-labeled", "failed", "unlabeled")} == {
        "items": 3, "total": 1, "human-labeled": 1, "machine-labeled": 0, "failed": 2,
        "unlabeled": 0}
    assert len(labeling.answers("life")) == 3  # failed items keep their answers
    assert labeling.next_task("life", bob) is None
    idle = labeling.job("idle")
    assert idle.status is JobStatus.FAILED and idle.counts["failed"] == 2
    assert "no item was labeled" in idle.failure_reason
    assert "availability lifetime" in idle.failure_reason
    summary = write_output(labeling, "life", tmp_path / "out", method="majority-vote")
    lines = [json.loads(x) for x in Path(summary["manifest"]).read_text().splitlines()]
    assert lines[0]["life-metadata"]["class-name"] == "positive"
    for line in lines[1:]:
        assert "life" not in line
        assert "availability lifetime" in line["life-metadata"]["failure-reason"]
        assert line["life-metadata"]["human-annotated"] == "no"


def test_deadline_is_evaluated_lazily_on_reads(labeling: LabelingJobs) -> None:
    with pytest.raises(ConfigurationError, match="has passed"):
        labeling.create_job(JobSpec("late", "nlp", LABELS,
                                    deadline="2020-01-01T00:00:00+00:00"), texts(1))
    with pytest.raises(ConfigurationError, match="ISO date"):
        JobSpec("bad", "nlp", LABELS, deadline="next friday")
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    labeling.create_job(JobSpec("soon", "nlp", LABELS, deadline=soon.isoformat()), texts(2))
    ana = labeling.workforce.add_worker("ana", teams_=["nlp"])
    task = labeling.next_task("soon", ana)
    labeling.submit("soon", task.item_id, ana, "neutral")
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    assert labeling.next_task("soon", ana) is None
    spec = labeling.job("soon")
    assert spec.status is JobStatus.COMPLETED and spec.counts["failed"] == 1
    assert spec.failure_reason is None


def test_spec_round_trips_with_new_settings(labeling: LabelingJobs) -> None:
    spec = JobSpec("full", "nlp", LABELS, examples=[{"source": "great", "answer": "positive"}],
                   availability_lifetime_seconds=3600, adaptive={"target_confidence": 0.7,
                                                                "max_workers": 5},
                   workers_per_item=3)
    labeling.create_job(spec, texts(1))
    back = labeling.job("full")
    assert back.examples == spec.examples and back.adaptive == spec.adaptive
    assert back.availability_lifetime_seconds == 3600
    with pytest.raises(ConfigurationError, match="max_workers"):
        JobSpec("x", "nlp", LABELS, workers_per_item=3,
                adaptive={"target_confidence": 0.7, "max_workers": 2})
    with pytest.raises(ConfigurationError, match="webhook_secret"):
        JobSpec("x", "nlp", LABELS, webhooks=["http://127.0.0.1:9/hook"])


def test_cli_task_type_add_items_stop_and_status(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from loopworks.cli import main

    home = ["--home", str(tmp_path / "home")]
    run = CliRunner().invoke
    manifest = tmp_path / "in.manifest"
    manifest.write_text("".join(json.dumps({"source": t}) + "\n" for t in texts(3)))
    examples = tmp_path / "examples.json"
    examples.write_text(json.dumps([{"source": "Ada", "answer": {"entities": [
        {"start": 0, "end": 3, "label": "PER"}]}}]))
    assert run(main, ["team", "add", "nlp", *home]).exit_code == 0
    made = run(main, ["label", "create-job", "ner", "--manifest", str(manifest), "--team",
                      "nlp", "--labels", "PER,ORG", "--task-type", "named-entity-recognition",
                      "--examples", str(examples), "--deadline", "2999-01-01T00:00:00Z",
                      "--adaptive-target", "0.8", "--max-workers", "3", *home])
    assert made.exit_code == 0, made.output
    more = tmp_path / "more.manifest"
    more.write_text(json.dumps({"source": "one more"}) + "\n")
    added = run(main, ["label", "add-items", "ner", "--manifest", str(more), *home])
    assert "added 1 items" in added.output, added.output
    sim = run(main, ["label", "simulate", "ner", *home])
    assert sim.exit_code != 0 and "simulation answers classification jobs" in sim.output
    status = json.loads(run(main, ["label", "status", "ner", *home]).output)
    assert status["status"] == "InProgress" and status["items"] == 4
    assert status["unlabeled"] == 4 and status["failed"] == 0
    assert "job 'ner' is Stopped" in run(main, ["label", "stop", "ner", *home]).output
    again = run(main, ["label", "stop", "ner", *home])
    assert again.exit_code != 0 and "cannot go from Stopped to Stopped" in again.output
    assert json.loads(run(main, ["label", "expire", *home]).output) == {}
    half = run(main, ["label", "create-job", "x", "--manifest", str(manifest), "--team",
                      "nlp", "--labels", "a,b", "--max-workers", "3", *home])
    assert half.exit_code != 0 and "--adaptive-target" in half.output


def test_an_older_database_is_brought_up_to_date(tmp_path: Path) -> None:
    import sqlite3

    import sqlalchemy as sa

    from loopworks.metadata import open_engine

    spec = {"name": "old", "team": "nlp", "labels": LABELS, "task_type": "text-classification",
            "instructions": "", "workers_per_item": 2, "time_limit_seconds": 300,
            "label_attribute": "old", "created_at": datetime.now(UTC).isoformat()}
    # The tables as the first labeling release made them, written without loopworks; the
    # first open_engine brings them up to date.
    with sqlite3.connect(tmp_path / "old.db") as conn:
        for ddl in [
            "CREATE TABLE label_jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, name VARCHAR(63) "
            "NOT NULL UNIQUE, team VARCHAR(63) NOT NULL, spec TEXT NOT NULL, status "
            "VARCHAR(16) NOT NULL, created_at DATETIME NOT NULL)",
            "CREATE TABLE label_items (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER "
            "NOT NULL REFERENCES label_jobs(id) ON DELETE CASCADE, seq INTEGER NOT NULL, "
            "source TEXT NOT NULL, data TEXT NOT NULL, answers INTEGER NOT NULL, leases "
            "INTEGER NOT NULL)",
            "CREATE INDEX ix_label_items_next ON label_items (job_id, answers DESC, seq)"]:
            conn.execute(ddl)
        conn.execute("INSERT INTO label_jobs VALUES (1, 'old', 'nlp', ?, 'InProgress', "
                     "'2025-01-01 00:00:00')", (json.dumps(spec),))
        conn.execute("INSERT INTO label_items VALUES (1, 1, 0, 'a', '{}', 2, 0), "
                     "(2, 1, 1, 'b', '{}', 1, 0)")
    engine = open_engine(f"sqlite:///{tmp_path / 'old.db'}")
    jobs = LabelingJobs(engine)
    jobs.workforce.add_team("nlp")
    counts = jobs.job("old").counts
    assert counts["labeled"] == 1 and counts["unlabeled"] == 1
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    task = jobs.next_task("old", ana)
    assert task is not None and task.source == "b"
    jobs.submit("old", task.item_id, ana, "neutral")
    assert jobs.job("old").status is JobStatus.COMPLETED
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("label_items")}
    assert "ix_label_items_open" in indexes and "ix_label_items_next" not in indexes


def test_stop_while_many_workers_answer(labeling: LabelingJobs) -> None:
    import threading

    from loopworks.labeling.schema import leases

    labeling.create_job(JobSpec("rush", "nlp", LABELS, workers_per_item=2), texts(400))
    workers = [labeling.workforce.add_worker(f"r{i}", teams_=["nlp"]) for i in range(8)]
    recorded: list[int] = []
    errors: list[BaseException] = []
    started = threading.Event()

    def work(worker) -> None:
        try:
            while (task := labeling.next_task("rush", worker)) is not None:
                started.set()
                time.sleep(0.002)  # reading the text
                labeling.submit("rush", task.item_id, worker, "neutral")
                recorded.append(task.item_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    started.wait(30)
    time.sleep(0.2)
    assert labeling.stop("rush") in (JobStatus.STOPPING, JobStatus.STOPPED)
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]  # tasks held at the stop could still be answered
    spec = labeling.job("rush")
    assert spec.status is JobStatus.STOPPED
    assert spec.counts["answers"] == len(recorded) < 800
    import sqlalchemy as sa

    with labeling.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leases)).scalar() == 0
