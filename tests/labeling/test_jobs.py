"""Labeling jobs: manifests, leases, quotas, and many workers at once (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from loopworks.errors import ConfigurationError, ConflictError, InputError, PermissionDenied
from loopworks.labeling.jobs import JobSpec, LabelingJobs

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def jobs(labeling_jobs: LabelingJobs) -> LabelingJobs:
    return labeling_jobs

def manifest(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "input.manifest"
    path.write_text("".join(json.dumps({"source": f"review {i}", "review_id": f"r{i}"}) + "\n"
                            for i in range(n)))
    return path


def test_manifest_errors_name_the_line_and_create_nothing(jobs: LabelingJobs,
                                                         tmp_path: Path) -> None:
    bad = tmp_path / "bad.manifest"
    bad.write_text('{"source": "ok"}\n{"text": "no source"}\n')
    with pytest.raises(InputError, match=r"bad.manifest, line 2: needs a non-empty 'source'"):
        jobs.create_job(JobSpec("j", "nlp", LABELS), bad)
    broken = tmp_path / "broken.manifest"
    broken.write_text('{"source": "ok"}\n{"source": \n')
    with pytest.raises(InputError, match="line 2: invalid JSON"):
        jobs.create_job(JobSpec("j", "nlp", LABELS), broken)
    (tmp_path / "doc.txt").write_text("from a file")
    ref = tmp_path / "ref.manifest"
    ref.write_text('{"source-ref": "doc.txt"}\n')
    created = jobs.create_job(JobSpec("j", "nlp", LABELS), ref)
    assert created.counts["items"] == 1


def test_leases_quota_and_team_rules(jobs: LabelingJobs, tmp_path: Path) -> None:
    jobs.create_job(JobSpec("sent", "nlp", LABELS, workers_per_item=2, time_limit_seconds=10),
                    manifest(tmp_path, 3))
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    bob = jobs.workforce.add_worker("bob", teams_=["nlp"])
    eve = jobs.workforce.add_worker("eve", teams_=["other"])
    with pytest.raises(PermissionDenied, match="not in team 'nlp'"):
        jobs.next_task("sent", eve)
    seen = set()
    while (task := jobs.next_task("sent", ana)) is not None:
        assert task.item_id not in seen  # never the same item twice to one worker
        seen.add(task.item_id)
        jobs.submit("sent", task.item_id, ana, "positive")
    assert len(seen) == 3
    task = jobs.next_task("sent", bob)
    with pytest.raises(ConflictError, match="no live task"):
        jobs.submit("sent", task.item_id, ana, "negative")  # not ana's lease
    with pytest.raises(Exception, match="not one of the job's labels"):
        jobs.submit("sent", task.item_id, bob, "great")
    jobs.submit("sent", task.item_id, bob, "negative")
    with pytest.raises(ConflictError):
        jobs.submit("sent", task.item_id, bob, "negative")  # no second answer
    counts = jobs.job("sent").counts
    assert counts == {"items": 3, "labeled": 1, "unlabeled": 2, "answers": 4, "total": 1,
                      "human-labeled": 1, "machine-labeled": 0, "failed": 0}
    assert jobs.job("sent").status.value == "InProgress"
    jobs.stop("sent")
    assert jobs.job("sent").status.value == "Stopped"
    assert jobs.next_task("sent", bob) is None  # a stopped job hands out nothing


def test_a_cap_on_items_in_flight_holds_new_items_back(jobs: LabelingJobs,
                                                      tmp_path: Path) -> None:
    """MaxConcurrentTaskCount: once that many items are leased or partly answered, people
    get only those; a finished item makes room for the next."""
    jobs.create_job(JobSpec("capped", "nlp", LABELS, max_concurrent_items=2),
                    manifest(tmp_path, 5))
    ana, bob, cy, dee = (jobs.workforce.add_worker(n, teams_=["nlp"])
                         for n in ("ana", "bob", "cy", "dee"))
    first, second = jobs.next_task("capped", ana), jobs.next_task("capped", bob)
    assert first is not None and second is not None and first.item_id != second.item_id
    assert jobs.next_task("capped", cy) is None  # two items in flight: nothing new
    jobs.submit("capped", first.item_id, ana, "positive")  # done: room for one more
    third = jobs.next_task("capped", cy)
    assert third is not None and third.item_id not in (first.item_id, second.item_id)
    assert jobs.next_task("capped", dee) is None
    assert jobs.job("capped").counts["unlabeled"] == 4
    with pytest.raises(ConfigurationError):
        JobSpec("bad-cap", "nlp", LABELS, max_concurrent_items=0)


def test_expired_leases_return_to_the_queue(jobs: LabelingJobs, tmp_path: Path) -> None:
    from datetime import timedelta

    import sqlalchemy as sa

    from loopworks.labeling.schema import leases

    jobs.create_job(JobSpec("one", "nlp", LABELS, workers_per_item=1), manifest(tmp_path, 1))
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    bob = jobs.workforce.add_worker("bob", teams_=["nlp"])
    task = jobs.next_task("one", ana)
    assert jobs.next_task("one", bob) is None  # the only item is leased
    with jobs.engine.begin() as conn:  # let ana's lease run out
        conn.execute(sa.update(leases).values(
            expires_at=task.expires_at - timedelta(seconds=3600)))
    again = jobs.next_task("one", bob)
    assert again is not None and again.item_id == task.item_id
    with pytest.raises(ConflictError, match="expired"):
        jobs.submit("one", task.item_id, ana, "neutral")
    jobs.submit("one", again.item_id, bob, "neutral")
    assert jobs.job("one").counts["labeled"] == 1


def test_many_workers_at_once_never_exceed_the_quota(jobs: LabelingJobs,
                                                     tmp_path: Path) -> None:
    n_items, per_item, n_workers = 60, 3, 12
    jobs.create_job(JobSpec("busy", "nlp", LABELS, workers_per_item=per_item),
                    manifest(tmp_path, n_items))
    workers = [jobs.workforce.add_worker(f"w{i}", teams_=["nlp"]) for i in range(n_workers)]
    errors: list[BaseException] = []

    def work(worker) -> None:
        try:
            while (task := jobs.next_task("busy", worker)) is not None:
                jobs.submit("busy", task.item_id, worker, LABELS[task.item_id % 3])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert time.monotonic() - start < 120
    got = jobs.answers("busy")
    pairs = [(a["item_id"], a["worker"]) for a in got]
    assert len(pairs) == len(set(pairs))  # no worker answered an item twice
    per = {}
    for item_id, _ in pairs:
        per[item_id] = per.get(item_id, 0) + 1
    assert len(per) == n_items and set(per.values()) == {per_item}  # exactly N each
    assert jobs.job("busy").counts["labeled"] == n_items
    assert jobs.job("busy").status.value == "Completed"


def _while_locked(jobs: LabelingJobs, job: str, source: str, ask) -> list:
    """Run ``ask`` in a thread while another transaction holds the row lock of the item
    with ``source`` (as a worker leasing or answering it does); check the request waits
    for that transaction, and return what it gave once the lock is released."""
    import sqlalchemy as sa

    from loopworks.labeling import schema

    job_id = sa.select(schema.jobs.c.id).where(schema.jobs.c.name == job).scalar_subquery()
    got: list = []
    with jobs.engine.connect() as conn, conn.begin():
        conn.execute(sa.select(schema.items.c.id).where(
            schema.items.c.job_id == job_id, schema.items.c.source == source)
            .with_for_update()).all()
        asking = threading.Thread(target=lambda: got.append(ask()))
        asking.start()
        asking.join(0.5)
        assert asking.is_alive()  # still waiting: it did not say "nothing left"
    asking.join(60)
    return got


def test_a_worker_is_not_told_nothing_is_left_while_others_hold_the_last_items(
        jobs: LabelingJobs, tmp_path: Path) -> None:
    # PostgreSQL passes over rows other transactions lock (SKIP LOCKED); when those are all
    # that is left, a request waits for them instead of saying the job has nothing left.
    if not jobs.on_postgres:
        pytest.skip("row locks are PostgreSQL's; SQLite serializes writers")
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    bob = jobs.workforce.add_worker("bob", teams_=["nlp"])
    for job in ("lease", "answer"):
        jobs.create_job(JobSpec(job, "nlp", LABELS, workers_per_item=1),
                        manifest(tmp_path, 2))
    held = jobs.next_task("lease", ana)
    assert held is not None
    other = "review 1" if held.source == "review 0" else "review 0"
    got = _while_locked(jobs, "lease", other, lambda: jobs.next_task("lease", bob))
    assert got and got[0] is not None and got[0].source == other

    # Answer and lease the next in one request: the answer is kept, the next task waits.
    first = jobs.next_task("answer", ana)
    assert first is not None
    other = "review 1" if first.source == "review 0" else "review 0"
    got = _while_locked(jobs, "answer", other, lambda: jobs.record_answer(
        "answer", first.item_id, ana, "neutral", then_next=True, idempotency_key="k-1"))
    assert got and got[0].next is not None and got[0].next.source == other
    again = jobs.record_answer("answer", first.item_id, ana, "neutral", then_next=True,
                               idempotency_key="k-1")  # a retry: the same next task
    assert again.replayed and again.next is not None and again.next.source == other
    assert jobs.job("answer").counts["labeled"] == 1


def test_cli_job_simulate_and_augmented_manifest(tmp_path: Path) -> None:
    import random

    from click.testing import CliRunner

    from loopworks.cli import main

    rng = random.Random(4)
    path = tmp_path / "input.manifest"
    truth = [rng.choice(LABELS) for _ in range(40)]
    path.write_text("".join(json.dumps({"source": f"review <b>{i}</b>", "review_id": f"r{i}",
                                        "truth": t, **({"gold": t} if i % 4 == 0 else {})})
                            + "\n" for i, t in enumerate(truth)))
    home = ["--home", str(tmp_path / "home")]
    run = CliRunner().invoke
    assert run(main, ["team", "add", "nlp", *home]).exit_code == 0
    made = run(main, ["label", "create-job", "sent", "--manifest", str(path), "--team", "nlp",
                      "--labels", ",".join(LABELS), "--workers-per-item", "3", *home])
    assert made.exit_code == 0, made.output
    sim = run(main, ["label", "simulate", "sent", "--accuracy", "0.9,0.85,0.8", *home])
    assert sim.exit_code == 0 and "120 answers" in sim.output, sim.output
    status = json.loads(run(main, ["label", "status", "sent", *home]).output)
    assert status["labeled"] == 40 and status["answers"] == 120
    out = tmp_path / "out"
    exported = run(main, ["label", "export", "sent", "--out", str(out), *home])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(x) for x in
             (out / "manifests" / "output" / "output.manifest").read_text().splitlines()]
    assert [x["review_id"] for x in lines] == [f"r{i}" for i in range(40)]
    meta = lines[0]["sent-metadata"]
    assert meta["type"] == "groundtruth/text-classification" and meta["human-annotated"] == "yes"
    assert meta["job-name"] == "labeling-job/sent" and meta["loopworks"]["worker-count"] == 3
    assert LABELS[lines[0]["sent"]] == meta["class-name"]
    correct = sum(x["sent-metadata"]["class-name"] == x["truth"] for x in lines)
    assert correct >= 36  # three fair workers, consolidated, beat any one of them
    scores = json.loads(run(main, ["label", "workers", "sent", *home]).output)
    assert [s["worker"] for s in scores] == ["sim-1", "sim-2", "sim-3"]
    assert all(s["gold_answers"] == 10 for s in scores)  # 10 gold items, each seen by all
    assert scores[0]["gold_accuracy"] >= scores[2]["gold_accuracy"] - 0.3
    to_fs = run(main, ["label", "export", "sent", "--out", str(out), "--feature-group",
                       "sentiment_labels", "--id-field", "review_id", *home])
    assert "40 labels written to feature group 'sentiment_labels'" in to_fs.output, to_fs.output
    from loopworks.featurestore import FeatureStore

    with FeatureStore(home=tmp_path / "home") as store:
        record = store.feature_group("sentiment_labels").get_record("r0")
        assert record["label"] == lines[0]["sent-metadata"]["class-name"]
        assert record["job"] == "sent" and record["workers"] == 3 and record["human_annotated"]
    raw = (out / "annotations" / "answers.jsonl").read_text().splitlines()
    assert len(raw) == 120 and "submitted_at" in raw[0]


def test_submit_and_next_in_one_transaction(jobs: LabelingJobs, tmp_path: Path) -> None:
    n_items, per_item = 40, 2
    jobs.create_job(JobSpec("chain", "nlp", LABELS, workers_per_item=per_item),
                    manifest(tmp_path, n_items))
    workers = [jobs.workforce.add_worker(f"s{i}", teams_=["nlp"]) for i in range(6)]
    with pytest.raises(ConflictError, match="no live task"):
        jobs.submit_and_next("chain", 1, workers[0], "neutral")
    errors: list[BaseException] = []
    answered: list[tuple[int, str]] = []

    def work(worker) -> None:
        try:
            task = jobs.next_task("chain", worker)
            while task is not None:
                answered.append((task.item_id, worker.name))
                task = jobs.submit_and_next("chain", task.item_id, worker,
                                            LABELS[task.item_id % 3])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(answered) == len(set(answered)) == n_items * per_item
    got = jobs.answers("chain")
    assert sorted((a["item_id"], a["worker"]) for a in got) == sorted(answered)
    assert jobs.job("chain").status.value == "Completed"
