"""Webhooks against a real local HTTP server: signed, retried with back-off, never lost."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from loopworks.labeling import webhooks
from loopworks.labeling.jobs import JobSpec, LabelingJobs

from _receiver import Receiver

LABELS = ["neg", "pos"]
SECRET = "s3cret"


@pytest.fixture
def url(metadata_url: str) -> str:
    return metadata_url


def _jobs(url: str) -> LabelingJobs:
    from loopworks.metadata import open_engine

    jobs = LabelingJobs(open_engine(url))
    if "nlp" not in [t.name for t in jobs.workforce.teams()]:
        jobs.workforce.add_team("nlp")
    return jobs


def _wait(jobs: LabelingJobs, job_id: int | None, seconds: float) -> list[dict]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rows = webhooks.deliveries(jobs.engine, job_id)
        if rows and all(r["state"] != "pending" for r in rows):
            return rows
        time.sleep(0.05)
    return webhooks.deliveries(jobs.engine, job_id)


def _label_all(jobs: LabelingJobs, job: str) -> None:
    worker = jobs.workforce.add_worker("ana", teams_=["nlp"])
    while (task := jobs.next_task(job, worker)) is not None:
        jobs.submit(job, task.item_id, worker, "pos")


def test_events_signed_and_retried_until_delivered(url: str) -> None:
    receiver = Receiver(failures=2)
    jobs = _jobs(url)
    try:
        jobs.create_job(JobSpec("hooked", "nlp", LABELS, webhooks=[receiver.url],
                                webhook_secret=SECRET), ["a", "b"])
        _label_all(jobs, "hooked")
        rows = _wait(jobs, None, 20)
    finally:
        jobs.webhooks.close()
        receiver.close()
    assert [r["state"] for r in rows] == ["delivered"] * 3, rows
    assert [r["event"] for r in rows] == ["item.labeled", "item.labeled", "job.completed"]
    assert rows[-1]["payload"]["status"] == "Completed"
    assert rows[0]["payload"]["job"] == "hooked" and rows[0]["payload"]["answers"] == 1
    assert len(receiver.requests) == 5  # two failures, then each event once
    # The two failed deliveries are retried, with the same delivery id, after ~0.5 s.
    failed = [r["headers"]["X-Loopworks-Delivery"] for r in receiver.requests[:2]]
    for delivery in failed:
        tries = [r["at"] for r in receiver.requests
                 if r["headers"]["X-Loopworks-Delivery"] == delivery]
        assert len(tries) == 2 and 0.4 <= tries[1] - tries[0] < 3.0
    attempts = {str(r["id"]): r["attempts"] for r in rows}
    assert sorted(attempts.values()) == [1, 2, 2]
    assert all(attempts[d] == 2 for d in failed)
    for request in receiver.requests:
        body, headers = request["body"], request["headers"]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Loopworks-Signature"] == expected
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Loopworks-Event"] == json.loads(body)["event"]


def test_gives_up_after_the_retries_and_records_it(url: str) -> None:
    receiver = Receiver(failures=100)
    jobs = _jobs(url)
    jobs.webhooks = webhooks.Dispatcher(jobs.engine, backoff=(0.05, 0.1))
    try:
        jobs.create_job(JobSpec("down", "nlp", LABELS, webhooks=[receiver.url],
                                webhook_secret=SECRET), ["a"])
        _label_all(jobs, "down")
        rows = _wait(jobs, None, 20)
    finally:
        jobs.webhooks.close()
        receiver.close()
    assert {r["state"] for r in rows} == {"gave-up"}
    assert all(r["attempts"] == 3 and r["last_error"] == "HTTP 500" for r in rows)
    assert len(receiver.requests) == 3 * len(rows)


def test_undelivered_events_survive_a_restart(url: str) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    jobs = _jobs(url)
    jobs.webhooks = webhooks.Dispatcher(jobs.engine, backoff=(0.05,) * 3)
    jobs.create_job(JobSpec("later", "nlp", LABELS, webhooks=[f"http://127.0.0.1:{port}/hook"],
                            webhook_secret=SECRET), ["a"])
    jobs.webhooks.close()
    jobs.webhooks.wake = lambda: None  # this process delivers nothing (it "crashes")
    _label_all(jobs, "later")
    assert [r["state"] for r in webhooks.deliveries(jobs.engine)] == ["pending"] * 2
    receiver = Receiver(port=port)
    restarted = _jobs(url)  # a new process finds the outbox and delivers it
    try:
        rows = _wait(restarted, None, 20)
    finally:
        restarted.webhooks.close()
        receiver.close()
    assert [r["state"] for r in rows] == ["delivered"] * 2
    assert [json.loads(r["body"])["event"] for r in receiver.requests] == [
        "item.labeled", "job.completed"]
