"""kill -9 of `loopworks serve` while 50 annotators answer: no acknowledged answer is lost,
none is recorded twice, no item gets more answers than it wants, and a client that retries
the answer whose reply the crash swallowed (with its Idempotency-Key) gets the stored result
instead of a 409. On SQLite here; on PostgreSQL + Redis in the slow suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.metadata import database_url, open_engine

LABELS = ["negative", "neutral", "positive"]
CLIENTS = 50


class Server:
    """`loopworks serve` in a process group of its own, so it can be killed with -9 and
    started again on the same port."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "LOOPWORKS_HOME": str(home),
                    "LOOPWORKS_API_TOKEN": "operator-token"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home.parent / "server.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loopworks.cli", "serve", "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def _crash_under_load(home: Path, jobs: LabelingJobs, env: dict[str, str],
                      items: int = 400, per_item: int = 2, kill_after: int = 250) -> None:
    jobs.workforce.add_team("crowd")
    jobs.create_job(JobSpec("crash", "crowd", LABELS, workers_per_item=per_item,
                            time_limit_seconds=3600), [f"text {i}" for i in range(items)])
    tokens = []
    for i in range(CLIENTS):
        jobs.workforce.add_worker(f"w{i}", teams_=["crowd"])
        tokens.append(jobs.workforce.issue_api_token(f"w{i}"))
    server = Server(home, env)
    server.start()
    acked: list[tuple[str, int, str]] = []  # (worker, item, answer) the server said 201 to
    lock = threading.Lock()
    retried_conflicts: list[str] = []
    replayed: list[int] = []  # answers stored before the crash whose reply it swallowed
    killed = threading.Event()
    restarted = threading.Event()
    errors: list[BaseException] = []

    def call(client: httpx.Client, method: str, path: str, **kw) -> httpx.Response:
        """A request that rides out the crash: on a dropped connection it waits for the
        restarted server and sends the same request again (same Idempotency-Key)."""
        while True:
            try:
                return client.request(method, path, **kw)
            except httpx.TransportError:
                restarted.wait(120)
                time.sleep(0.05)

    def work(index: int) -> None:
        worker = f"w{index}"
        try:
            with httpx.Client(base_url=server.url, timeout=60, headers={
                    "Authorization": f"Bearer {tokens[index]}"}) as client:
                while True:
                    task = call(client, "POST", "/api/labeling/jobs/crash/next")
                    if task.status_code == 204:
                        return
                    assert task.status_code == 200, task.text
                    item = task.json()["item_id"]
                    answer = LABELS[item % 3]
                    key = {"Idempotency-Key": str(uuid.uuid4())}
                    # The lease lasts an hour: the only answer to this is 201, fresh or,
                    # for a retry of an answer stored before the crash, replayed.
                    done = call(client, "POST",
                                f"/api/labeling/jobs/crash/tasks/{item}/answer",
                                json={"answer": answer}, headers=key)
                    if done.status_code == 409:
                        retried_conflicts.append(f"{worker} item {item}: {done.text}")
                        continue
                    assert done.status_code == 201, done.text
                    with lock:
                        acked.append((worker, item, answer))
                        if done.headers.get("Idempotent-Replayed") == "true":
                            replayed.append(item)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        while len(acked) < kill_after and any(t.is_alive() for t in threads):
            time.sleep(0.01)
        killed.set()
        server.kill9()  # mid-stream: requests in flight, some stored and never answered
        with lock:
            acked_before_kill = len(acked)
        server.start()
        restarted.set()
        for t in threads:
            t.join(600)
        assert not any(t.is_alive() for t in threads), "clients did not finish"
    finally:
        server.stop()
    assert not errors, errors[:3]
    assert acked_before_kill >= kill_after and acked_before_kill < items * per_item
    assert not retried_conflicts, retried_conflicts[:3]  # retries got their stored result
    stored = {(a["worker"], a["item_id"]): a["answer"] for a in jobs.answers("crash")}
    assert len(stored) == len(jobs.answers("crash"))  # none twice
    lost = [a for a in acked if stored.get((a[0], a[1])) != a[2]]
    assert lost == []  # every acknowledged answer is there, as given
    per_item_counts = Counter(item for _, item in stored)
    assert max(per_item_counts.values()) <= per_item  # no item over its quota
    assert len(stored) == items * per_item  # the job finished after the restart
    assert len(set(acked)) == len(acked) == len(stored)
    print(f"crash test: {len(acked)} answers acknowledged, {acked_before_kill} before the "
          f"kill; {len(replayed)} retries answered from their idempotency key; 0 lost")


def test_kill_9_under_50_clients_loses_no_acknowledged_answer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    _crash_under_load(home, jobs, {})


@pytest.mark.slow
def test_kill_9_on_postgres_and_redis(tmp_path: Path, postgres_url: str, redis_url: str
                                      ) -> None:
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(postgres_url))
    _crash_under_load(home, jobs, {"LOOPWORKS_DATABASE_URL": postgres_url,
                                   "LOOPWORKS_ONLINE_STORE_URL": redis_url},
                      items=1000, kill_after=800)
