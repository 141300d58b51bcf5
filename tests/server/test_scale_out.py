"""Two `loopworks serve` processes on one database, as two machines behind a load balancer.

100 clients label, review and read features through both servers at once; one server is
killed with SIGKILL mid-stream and its clients go on through the other, as a load balancer
would send them. Afterwards the database must hold every acknowledged answer once, no item
over its quota, each automated-labeling round run once, every webhook event delivered, and
every feature read must have returned the record as written.

On PostgreSQL + Redis the two servers have homes of their own (two machines: nothing shared
but the database, the online store and the settings); on SQLite they share one home (SQLite
is one machine's database, and several processes on it are safe: WAL, ``BEGIN IMMEDIATE``,
a busy timeout).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import loopworks
from loopworks.labeling.autolabel import AutoLabeler
from loopworks.labeling.jobs import JobSpec, JobStatus
from loopworks.labeling.webhooks import LANES
from loopworks.review.definitions import FlowDefinition
from loopworks.samples import generate_reviews

from _aws import aws_keys, clients
from _receiver import Receiver

LABELS = ["negative", "neutral", "positive"]
TOKEN = "scale-out-operator"
LABELERS, REVIEWERS, READERS = 60, 20, 20
ITEMS, PER_ITEM, LOOPS, RECORDS = 300, 2, 120, 400
KILL_AFTER = 200  # acknowledged answers before the second server is killed


# SQLite (both processes on one home) is in the slow run: the PostgreSQL one covers the logic.
@pytest.fixture(params=["postgresql+redis", pytest.param("sqlite", marks=pytest.mark.slow)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The settings both servers get, and their homes."""
    env = {"LOOPWORKS_API_TOKEN": TOKEN, "LOOPWORKS_SECRET_KEY": secrets.token_urlsafe(32),
           "LOOPWORKS_WEBHOOK_ALLOW": "127.0.0.1/32"}
    if request.param == "sqlite":
        homes = [tmp_path / "home"] * 2
    else:
        env["LOOPWORKS_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        env["LOOPWORKS_ONLINE_STORE_URL"] = request.getfixturevalue("redis_url")
        homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOOPWORKS_HOME", str(homes[0]))
    return {"env": env, "homes": homes, "kind": request.param}


def _truth(text_stars: tuple[str, int]) -> str:
    stars = text_stars[1]
    return LABELS[0] if stars <= 2 else LABELS[1] if stars == 3 else LABELS[2]


def _set_up(home: Path, receiver: Receiver, group: str) -> dict[str, Any]:
    """Workers, a labeling job with a webhook, an automated-labeling job, a review flow with
    loops, a feature group with records; what the clients need to know of them."""
    reviews = generate_reviews(1250, seed=2, broken=False).to_pandas()
    truth = {text: _truth((text, int(stars))) for text, stars
             in zip(reviews.review_body, reviews.star_rating, strict=True)}
    with loopworks.open(home) as lw:
        force = lw.labeling.workforce
        force.add_team("crowd")
        force.add_team("reviewers")
        force.add_worker("lead", role="admin")
        labelers = []
        for i in range(LABELERS):
            force.add_worker(f"l{i:02d}", teams_=["crowd"])
            labelers.append(force.issue_api_token(f"l{i:02d}"))
        reviewers = []
        for i in range(REVIEWERS):
            force.add_worker(f"r{i:02d}", "reviewer", teams_=["reviewers"])
            reviewers.append(force.issue_api_token(f"r{i:02d}"))
        lw.labeling.create_job(JobSpec("reviews", "crowd", LABELS, workers_per_item=PER_ITEM,
                                       webhooks=[receiver.url], webhook_secret="s3cret"),
                               [f"item {i}: {text}" for i, text
                                in enumerate(reviews.review_body[:ITEMS])])
        lw.labeling.create_job(JobSpec("auto", "crowd", LABELS,
                                       auto_label={"batch_size": 100}),
                               list(reviews.review_body))
        lw.review.create_flow(FlowDefinition("check", "reviewers", LABELS,
                                             output=str(home.parent / "review-out")))
        lw.review.start_human_loops("check", [
            (f"loop-{i}", {"text": f"loop {i}", "probabilities": {"negative": 0.2,
                                                                  "neutral": 0.5,
                                                                  "positive": 0.3}})
            for i in range(LOOPS)])
        records = pd.DataFrame({"review_id": [f"r{i}" for i in range(RECORDS)],
                                "event_time": [datetime(2026, 1, 1, tzinfo=UTC)] * RECORDS,
                                "sentiment": [i % 3 - 1 for i in range(RECORDS)],
                                "input_ids": [[0, i, 2] for i in range(RECORDS)]})
        lw.features.create_feature_group(group, record_id="review_id",
                                         event_time="event_time", df=records).ingest(records)
    return {"truth": {**truth, **{f"item {i}: {text}": truth[text] for i, text
                                  in enumerate(reviews.review_body[:ITEMS])}},
            "labelers": labelers, "reviewers": reviewers}


@contextlib.contextmanager
def _server(home: Path, env: dict[str, str], log: Path) -> Iterator[tuple[str, Any]]:
    """A `loopworks serve` process (its own, not a supervisor's child): (URL, Popen)."""
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    full = dict(os.environ, **env, LOOPWORKS_HOME=str(home))
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "loopworks.cli", "serve", "--port",
                                 str(port)], env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Balancer:
    """What a load balancer does for one client: its server, else the one still up."""

    def __init__(self, urls: list[str], first: int, token: str) -> None:
        self.urls = urls
        self.at = first
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.failovers = 0

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(len(self.urls) + 1):
            try:
                return self.client.request(method, self.urls[self.at] + path, **kwargs)
            except httpx.TransportError:  # the server went away mid-request: try the other
                self.at = (self.at + 1) % len(self.urls)
                self.failovers += 1
        raise AssertionError(f"no server answered {method} {path}")

    def close(self) -> None:
        self.client.close()


class Clients:
    """The 100 clients' shared record of what the servers acknowledged."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acknowledged: dict[str, set[tuple[int, str]]] = {}
        self.answers = 0
        self.reads = 0
        self.errors: list[str] = []
        self.failovers = 0
        self.enough = threading.Event()  # time to kill a server
        self.labelers_done = threading.Event()

    def ack(self, job: str, item_id: int, worker: str) -> None:
        with self.lock:
            pairs = self.acknowledged.setdefault(job, set())
            if (item_id, worker) in pairs:
                self.errors.append(f"{job} item {item_id} acknowledged twice for {worker}")
            pairs.add((item_id, worker))
            self.answers += 1
            if self.answers >= KILL_AFTER:
                self.enough.set()

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def _label(balancer: Balancer, worker: str, job: str, answer_of: Any, clients: Clients,
           deadline: float, *, streaming: bool = False) -> None:
    """Answer the job's tasks, each answer leasing the next one (``?next=true``), until
    none is left for this worker; the 204 of a job still in progress is waited out (an
    automated-labeling round choosing the next batch), except in a streaming job (a review
    flow's), which stays in progress for loops to come."""
    reply = balancer.request("POST", f"/api/labeling/jobs/{job}/next")
    while time.monotonic() < deadline:
        if reply.status_code == 204 and streaming:
            return
        if reply.status_code == 204:
            mine = {j["name"]: j for j in balancer.request("GET", "/api/labeling/jobs").json()}
            if mine[job]["status"] != JobStatus.IN_PROGRESS.value:
                return
            time.sleep(0.2)
            reply = balancer.request("POST", f"/api/labeling/jobs/{job}/next")
            continue
        if reply.status_code not in (200, 201):
            clients.error(f"{worker} {job}: {reply.status_code} {reply.text[:200]}")
            return
        task = reply.json().get("next", reply.json())
        item_id = task["item_id"]
        # One key per answer: a retry on the other server after a kill is safe.
        reply = balancer.request("POST", f"/api/labeling/jobs/{job}/tasks/{item_id}/answer",
                                 params={"next": "true"}, json={"answer": answer_of(task)},
                                 headers={"Idempotency-Key": uuid.uuid4().hex})
        if reply.status_code in (201, 204):
            clients.ack(job, item_id, worker)
    clients.error(f"{worker} {job}: not done by the deadline")


def _read(balancer: Balancer, group: str, clients: Clients, rng: random.Random) -> None:
    while not clients.labelers_done.is_set():
        i = rng.randrange(RECORDS)
        reply = balancer.request("GET", f"/api/feature-groups/{group}/records/r{i}")
        record = reply.json() if reply.status_code == 200 else None
        if record is None or record["sentiment"] != i % 3 - 1 \
                or record["input_ids"] != [0, i, 2]:
            clients.error(f"record r{i}: {reply.status_code} {reply.text[:200]}")
            return
        with clients.lock:
            clients.reads += 1


def _sign_in_across(urls: list[str], home: Path) -> None:
    """A login link opened on one server, its form posted to the other, the session then
    used on the first: sessions, login links and CSRF tokens are the deployment's."""
    with loopworks.open(home) as lw:
        secret = lw.labeling.workforce.issue_login_link("lead")
    with httpx.Client() as browser:
        page = browser.get(f"{urls[0]}/login/{secret}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        signed_in = browser.post(f"{urls[1]}/login/{secret}", data={"csrf_token": csrf})
        assert signed_in.status_code == 303, signed_in.text
        board = browser.get(f"{urls[0]}/admin/jobs/reviews")
        assert board.status_code == 200 and "reviews" in board.text
        assert browser.get(f"{urls[1]}/admin/jobs/reviews").status_code == 200


def test_two_servers_one_killed(deployment: dict[str, Any], tmp_path: Path) -> None:
    env, homes = deployment["env"], deployment["homes"]
    group = f"scale_{secrets.token_hex(3)}"
    receiver = Receiver()
    try:
        setup = _set_up(homes[0], receiver, group)
        with _server(homes[0], env, tmp_path / "a.log") as (url_a, _), \
                _server(homes[1], env, tmp_path / "b.log") as (url_b, proc_b):
            urls = [url_a, url_b]
            _sign_in_across(urls, homes[0])
            key = aws_keys(homes[0], "lead")  # made on one server's database, used on both
            for url in urls:
                (sagemaker,) = clients(url, key, "sagemaker")
                assert [s["HumanTaskUiName"] for s in
                        sagemaker.list_human_task_uis()["HumanTaskUiSummaries"]] == []
            ran = _run_clients(urls, setup, group, proc_b)
            _check(homes[0], ran, receiver)  # the first server still up, delivering
    finally:
        receiver.close()


def _run_clients(urls: list[str], setup: dict[str, Any], group: str, killed: Any
                 ) -> Clients:
    clients = Clients()
    truth = setup["truth"]
    deadline = time.monotonic() + 240  # a bound for a failing run, not a pace
    rng = random.Random(7)
    balancers: list[Balancer] = []

    def labeler(index: int) -> None:
        balancer = balancers[index]
        worker = f"l{index:02d}"
        _label(balancer, worker, "reviews", lambda t: LABELS[t["item_id"] % 3], clients,
               deadline)
        _label(balancer, worker, "auto", lambda t: truth[t["source"]], clients, deadline)

    def reviewer(index: int) -> None:
        _label(balancers[LABELERS + index], f"r{index:02d}", "review-check",
               lambda t: LABELS[t["item_id"] % 3], clients, deadline, streaming=True)

    def reader(index: int) -> None:
        _read(balancers[LABELERS + REVIEWERS + index], group, clients,
              random.Random(rng.random()))

    tokens = setup["labelers"] + setup["reviewers"] + [TOKEN] * READERS
    balancers.extend(Balancer(urls, i % 2, token) for i, token in enumerate(tokens))
    work = ([threading.Thread(target=labeler, args=(i,)) for i in range(LABELERS)]
            + [threading.Thread(target=reviewer, args=(i,)) for i in range(REVIEWERS)])
    readers = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    try:
        for thread in work + readers:
            thread.start()
        assert clients.enough.wait(120), f"only {clients.answers} answers: {clients.errors}"
        killed.send_signal(signal.SIGKILL)  # mid-stream: requests in flight on it fail
        killed.wait(10)
        for thread in work:
            thread.join(max(1.0, deadline - time.monotonic()))
        clients.labelers_done.set()
        for thread in readers:
            thread.join(30)
    finally:
        clients.labelers_done.set()
        for balancer in balancers:
            balancer.close()
    clients.failovers = sum(b.failovers for b in balancers)
    return clients


def _check(home: Path, ran: Clients, receiver: Receiver) -> None:
    assert ran.errors == [], "\n".join(ran.errors)
    assert ran.failovers > 0, "the kill met no request in flight or later"  # noqa: PT018
    assert ran.reads > 0
    with loopworks.open(home) as lw:
        jobs = lw.labeling
        for job, quota in (("reviews", PER_ITEM), ("review-check", 1), ("auto", 1)):
            rows = jobs.answers(job)
            pairs = Counter((r["item_id"], r["worker"]) for r in rows)
            per_item = Counter(r["item_id"] for r in rows)
            assert [p for p, n in pairs.items() if n > 1] == [], job  # no duplicate answer
            assert [i for i, n in per_item.items() if n > quota] == [], job  # none over quota
            lost = ran.acknowledged.get(job, set()) - set(pairs)
            assert lost == set(), f"{job}: acknowledged answers missing: {sorted(lost)[:5]}"
        reviews = jobs.job("reviews")
        assert reviews.status is JobStatus.COMPLETED
        assert len(jobs.answers("reviews")) == ITEMS * PER_ITEM
        loops, _ = lw.review.list_human_loops("check", max_results=1000)
        assert len(loops) == LOOPS
        assert {loop.status.value for loop in loops} == {"Completed"}
        assert all(loop.output_uri and Path(loop.output_uri).is_file() for loop in loops)
        auto = jobs.job("auto")
        assert auto.status is JobStatus.COMPLETED
        rounds = AutoLabeler(jobs, home=home).rounds("auto")
        assert [r.round for r in rounds] == list(range(1, len(rounds) + 1))  # each once
        assert len(rounds) >= 2, rounds
        assert auto.counts["machine-labeled"] == sum(r.machine_labels for r in rounds) > 0
        assert auto.counts["human-labeled"] == len(jobs.answers("auto"))
        # Webhooks: every event delivered (at least once: a delivery the killed server
        # had claimed is the other's once the claim runs out; one it had sent but not yet
        # recorded is sent again, at most one per lane).
        deadline = time.monotonic() + 120
        while True:
            from loopworks.labeling import webhooks

            states = Counter(d["state"] for d in webhooks.deliveries(jobs.engine))
            if set(states) == {"delivered"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert states == Counter({"delivered": ITEMS + 1}), states  # each item, and job.completed
    deliveries = Counter(r["headers"]["X-Loopworks-Delivery"] for r in receiver.requests)
    assert len(deliveries) == ITEMS + 1
    assert sum(n - 1 for n in deliveries.values()) <= LANES
    events = Counter(json.loads(r["body"])["event"] for r in receiver.requests)
    assert events["job.completed"] >= 1
