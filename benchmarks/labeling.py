"""Labeling benchmark: consolidation accuracy, the labeling server under load, job creation.

Three figures, one run:

1. consolidation accuracy against gold of every method (majority-vote, dawid-skene,
   one-coin; glad and mace when crowd-kit is importable here) on the crowd data sets in
   ``../shared/data/crowd/{product,face_sentiment,dogs,bluebirds}``, beside crowd-kit's own
   figure computed in another Python that has crowd-kit (``--crowdkit-python``), with
   seconds per method;
2. the HTTP server's throughput (answers/s) and p50/p99 latency of next-task and submit for
   N concurrent workers (threads, each its own token and ``httpx.Client``) on a job of
   ``--items`` items (workers per item 1), against a real ``loopworks serve`` on the
   default SQLite metadata database in a temp home, for ``--seconds``; then the database is
   checked: no duplicate (item, worker), no item over its quota, every 201 recorded;
3. seconds to create the job, from a list of texts and from a JSON Lines manifest.

Results go to ``benchmarks/results/labeling.{md,json}`` (``labeling-scale.{md,json}`` with
``--server-processes``: closed-loop answers/s, paced p99 and CPU per answer for each number
of server processes, on SQLite and PostgreSQL); see ``benchmarks/README.md``.

    python benchmarks/labeling.py [--items 100000] [--workers 100] [--seconds 60]
                                  [--think 2.0] [--skip-crowd] [--skip-server]
                                  [--crowdkit-python PATH] [--server-processes 1,2]
                                  [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_RESULTS = HERE / "results"
DEFAULT_CROWD = REPO.parent / "shared" / "data" / "crowd"
DEFAULT_CROWDKIT = Path("/tmp/ck/venv/bin/python")
DATASETS = ("product", "face_sentiment", "dogs", "bluebirds")
NEXT_P99_TARGET_MS = 50.0
CREATE_TARGET_S = 10.0
LABELS = ["negative", "neutral", "positive"]

#: Runs inside the crowd-kit Python: argv[1] is the data folder, argv[2] the methods.
CROWDKIT_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
import crowdkit
from crowdkit import aggregation as agg
folder, methods = sys.argv[1], sys.argv[2].split(",")
answers = pd.read_csv(f"{folder}/answers.csv", dtype=str).rename(
    columns={"question": "task", "answer": "label"})
truth = pd.read_csv(f"{folder}/truth.csv", dtype=str).set_index("question")["truth"]
models = {"majority-vote": agg.MajorityVote, "dawid-skene": agg.DawidSkene,
          "one-coin": agg.OneCoinDawidSkene, "glad": agg.GLAD, "mace": agg.MACE}
out = {"version": crowdkit.__version__, "methods": {}}
for name in methods:
    start = time.perf_counter()
    try:
        labels = models[name]().fit_predict(answers)
    except Exception as exc:
        out["methods"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    seconds = time.perf_counter() - start
    common = truth.index.intersection(labels.index)
    acc = float((labels.loc[common].astype(str) == truth.loc[common]).mean())
    out["methods"][name] = {"accuracy": acc, "seconds": seconds, "n_gold": len(common)}
print(json.dumps(out))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- consolidation
def crowd_benchmark(crowd: Path, crowdkit_python: Path | None) -> dict[str, Any]:
    import warnings

    import pandas as pd

    from loopworks.labeling.consolidation import consolidate

    try:
        import crowdkit  # noqa: F401
        ours_methods = ["majority-vote", "dawid-skene", "one-coin", "glad", "mace"]
    except ImportError:
        ours_methods = ["majority-vote", "dawid-skene", "one-coin"]
    ck_methods = ["majority-vote", "dawid-skene", "one-coin", "glad", "mace"]
    have_ck = crowdkit_python is not None and crowdkit_python.exists()
    if not have_ck:
        print("crowd-kit not available")
    rows: list[dict[str, Any]] = []
    ck_version = None
    for name in DATASETS:
        folder = crowd / name
        if not (folder / "answers.csv").is_file():
            log(f"skip {name}: no {folder / 'answers.csv'}")
            continue
        answers = pd.read_csv(folder / "answers.csv", dtype=str)
        gold = pd.read_csv(folder / "truth.csv", dtype=str).rename(columns={"truth": "answer"})
        ck: dict[str, Any] = {}
        if have_ck:
            log(f"crowd-kit on {name} ...")
            proc = subprocess.run([str(crowdkit_python), "-c", CROWDKIT_SCRIPT, str(folder),
                                   ",".join(ck_methods)], capture_output=True, text=True,
                                  timeout=900)
            if proc.returncode == 0:
                parsed = json.loads(proc.stdout.strip().splitlines()[-1])
                ck, ck_version = parsed["methods"], parsed["version"]
            else:
                log(f"crowd-kit failed on {name}:\n{proc.stderr[-2000:]}")
        for method in ck_methods:
            row: dict[str, Any] = {"dataset": name, "method": method,
                                   "answers": len(answers), "gold": len(gold)}
            if method in ours_methods:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = consolidate(answers, method, item="question", worker="worker",
                                         label="answer", gold=gold)
                row["ours_seconds"] = time.perf_counter() - start
                row["ours_accuracy"] = result.gold_accuracy
                row["ours_iterations"] = result.iterations
            other = ck.get(method, {})
            row["crowdkit_accuracy"] = other.get("accuracy")
            row["crowdkit_seconds"] = other.get("seconds")
            if "error" in other:
                row["crowdkit_error"] = other["error"]
            if "ours_accuracy" in row or row["crowdkit_accuracy"] is not None:
                rows.append(row)
    return {"rows": rows, "crowdkit_version": ck_version, "crowdkit_python":
            str(crowdkit_python) if have_ck else None}


# ------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(home: Path, token: str, processes: int = 1,
                   started: list[subprocess.Popen[bytes]] | None = None) -> Iterator[str]:
    """A real ``loopworks serve --workers processes`` on a free port (as tests/conftest.py
    does); ``started`` receives its Popen (for CPU accounting)."""
    import httpx

    port = free_port()
    env = dict(os.environ, LOOPWORKS_HOME=str(home), LOOPWORKS_API_TOKEN=token)
    log_path = home / "server.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "loopworks.cli", "serve", "--port",
                                 str(port), "--workers", str(processes)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    if started is not None:
        started.append(proc)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def texts(n: int) -> list[str]:
    words = ["fit", "fabric", "colour", "size", "price", "quality", "soft", "cheap", "lovely",
             "returned", "tight", "loose", "perfect", "awful", "ok"]
    return [f"review {i}: the {words[i % 15]} was {words[(i * 7) % 15]} and "
            f"{words[(i * 11) % 15]}, would {'not ' if i % 3 else ''}buy again" for i in range(n)]


def create_jobs(home: Path, n_items: int, n_workers: int) -> tuple[dict[str, Any], list[str]]:
    """Create the team, workers and tokens; time the two ways of creating a job."""
    from loopworks.labeling.jobs import JobSpec, LabelingJobs
    from loopworks.metadata.database import database_url, dispose_engine, open_engine

    url = database_url(home)
    engine = open_engine(url)
    labeling = LabelingJobs(engine)
    labeling.workforce.add_team("bench")
    tokens = []
    for i in range(n_workers):
        name = f"w{i:03d}"
        labeling.workforce.add_worker(name, teams_=["bench"])
        tokens.append(labeling.workforce.issue_api_token(name))
    items = texts(n_items)
    start = time.perf_counter()
    labeling.create_job(JobSpec("bench", "bench", LABELS, workers_per_item=1), items)
    list_seconds = time.perf_counter() - start
    manifest = home / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as fh:
        for text in items:
            fh.write(json.dumps({"source": text}) + "\n")
    start = time.perf_counter()
    labeling.create_job(JobSpec("bench-manifest", "bench", LABELS, workers_per_item=1),
                        manifest)
    manifest_seconds = time.perf_counter() - start
    dispose_engine(url)
    return {"items": n_items, "list_seconds": list_seconds,
            "manifest_seconds": manifest_seconds}, tokens


class KeptAlive:
    """One kept-alive HTTP/1.1 connection (``http.client``), reopened if the server
    closes it."""

    def __init__(self, url: str) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self._open = lambda: http.client.HTTPConnection(parts.hostname, parts.port,
                                                        timeout=120)
        self.conn = self._open()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of a POST."""
        import http.client

        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = self._open()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def load(url: str, tokens: list[str], seconds: float, think: float = 0.0) -> dict[str, Any]:
    """Every worker asks for a task and answers it, until the time is up.

    With ``think`` > 0 each worker arrives after a random 0..2×think seconds and spends as
    long on each task between getting it and answering (a person reading), so the server
    sees a realistic arrival rate instead of 100 clients in a closed loop with no pause.
    """
    import random

    import httpx

    deadline = time.monotonic() + seconds
    next_ms: list[list[float]] = [[] for _ in tokens]
    submit_ms: list[list[float]] = [[] for _ in tokens]
    recorded: list[list[int]] = [[] for _ in tokens]
    statuses: list[Counter[int]] = [Counter() for _ in tokens]
    errors: list[str] = []
    start_gate = threading.Barrier(len(tokens) + 1)

    def work(index: int) -> None:
        # http.client with one kept-alive connection: a lean client, so that on a small
        # machine the clients take as little CPU from the server as they can.
        headers = {"Authorization": f"Bearer {tokens[index]}",
                   "Content-Type": "application/json"}
        rng = random.Random(index)
        client = KeptAlive(url)
        start_gate.wait()
        if think > 0:  # people arrive over time, not all in the same millisecond
            time.sleep(rng.uniform(0, 2 * think))
        try:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                status, body = client.post("/api/labeling/jobs/bench/next", b"", headers)
                next_ms[index].append((time.perf_counter() - t0) * 1000)
                statuses[index][status] += 1
                if status == 204:
                    return
                if status != 200:
                    errors.append(f"next {status}: {body[:200]!r}")
                    return
                item_id = json.loads(body)["item_id"]
                if think > 0:
                    time.sleep(rng.uniform(0, 2 * think))
                t0 = time.perf_counter()
                # A key per answer, as a careful client sends: a retry would be safe.
                status, body = client.post(
                    f"/api/labeling/jobs/bench/tasks/{item_id}/answer",
                    json.dumps({"answer": LABELS[item_id % 3]}).encode(),
                    {**headers, "Idempotency-Key": uuid.uuid4().hex})
                submit_ms[index].append((time.perf_counter() - t0) * 1000)
                statuses[index][status] += 1
                if status == 201:
                    recorded[index].append(item_id)
                else:
                    errors.append(f"submit {status}: {body[:200]!r}")
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    wal_bytes: list[int] = []
    done = threading.Event()

    def watch_wal() -> None:
        """The metadata database's WAL size each second (/healthz), to show it stays
        bounded under load."""
        with httpx.Client(base_url=url, timeout=30) as client:
            while not done.wait(1.0):
                with contextlib.suppress(httpx.HTTPError):
                    wal = client.get("/healthz").json()["database"].get("wal_bytes")
                    if wal is not None:
                        wal_bytes.append(int(wal))

    threads = [threading.Thread(target=work, args=(i,), daemon=True)
               for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    watcher = threading.Thread(target=watch_wal, daemon=True)
    watcher.start()
    start_gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    flat_next = [x for xs in next_ms for x in xs]
    flat_submit = [x for xs in submit_ms for x in xs]
    n_201 = sum(len(r) for r in recorded)
    return {
        "workers": len(tokens), "think_seconds": think, "seconds": elapsed,
        "answers_201": n_201,
        "answers_per_s": n_201 / elapsed,
        "next": {"requests": len(flat_next), "p50_ms": pct(flat_next, 0.5),
                 "p99_ms": pct(flat_next, 0.99), "max_ms": max(flat_next, default=0.0)},
        "submit": {"requests": len(flat_submit), "p50_ms": pct(flat_submit, 0.5),
                   "p99_ms": pct(flat_submit, 0.99), "max_ms": max(flat_submit, default=0.0)},
        "wal_mib": {"max": max(wal_bytes, default=0) / 2**20,
                    "last": (wal_bytes[-1] if wal_bytes else 0) / 2**20},
        "statuses": dict(sum(statuses, Counter())), "errors": errors[:20],
        "n_errors": len(errors),
        "recorded": {f"w{i:03d}": r for i, r in enumerate(recorded)},
    }


def domain_load(home: Path, n_workers: int, seconds: float, chain: bool = False
                ) -> dict[str, Any]:
    """The same loop without HTTP: threads call next_task and submit in this process, on
    the second job, to show what the labeling layer itself costs under contention. With
    ``chain``, each answer also leases the next task (``submit_and_next``, one transaction).
    """
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata.database import database_url, dispose_engine, open_engine

    url = database_url(home)
    labeling = LabelingJobs(open_engine(url))
    workers = [labeling.workforce.worker(f"w{i:03d}") for i in range(n_workers)]
    next_ms: list[float] = []
    submit_ms: list[float] = []
    errors: list[str] = []
    gate = threading.Barrier(n_workers + 1)
    deadline = 0.0

    def work(worker: Any) -> None:
        gate.wait()
        try:
            task = None
            while time.monotonic() < deadline:
                if task is None:
                    t0 = time.perf_counter()
                    task = labeling.next_task("bench-manifest", worker)
                    next_ms.append((time.perf_counter() - t0) * 1000)
                    if task is None:
                        return
                t0 = time.perf_counter()
                answer = LABELS[task.item_id % 3]
                if chain:
                    task = labeling.submit_and_next("bench-manifest", task.item_id, worker,
                                                    answer)
                else:
                    labeling.submit("bench-manifest", task.item_id, worker, answer)
                    task = None
                submit_ms.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # reported, not raised: the figures say what happened
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    dispose_engine(url)
    return {"workers": n_workers, "seconds": elapsed, "answers": len(submit_ms),
            "database": labeling.engine.dialect.name,
            "answers_per_s": len(submit_ms) / elapsed,
            "next": {"p50_ms": pct(next_ms, 0.5), "p99_ms": pct(next_ms, 0.99)},
            "submit": {"p50_ms": pct(submit_ms, 0.5), "p99_ms": pct(submit_ms, 0.99)},
            "errors": errors[:5], "n_errors": len(errors)}


def check_database(home: Path, recorded: dict[str, list[int]]) -> dict[str, Any]:
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata.database import database_url, dispose_engine, open_engine

    url = database_url(home)
    labeling = LabelingJobs(open_engine(url))
    rows = labeling.answers("bench")
    spec = labeling.job("bench")
    pairs = Counter((r["item_id"], r["worker"]) for r in rows)
    per_item = Counter(r["item_id"] for r in rows)
    seen = {(item, worker) for worker, ids in recorded.items() for item in ids}
    in_db = set(pairs)
    # The in-process (no HTTP) runs answered the second job: same rules there.
    other = labeling.answers("bench-manifest")
    other_pairs = Counter((r["item_id"], r["worker"]) for r in other)
    other_items = Counter(r["item_id"] for r in other)
    dispose_engine(url)
    return {"answers_in_db": len(rows),
            "duplicate_pairs": sum(1 for c in pairs.values() if c > 1),
            "items_over_quota": sum(1 for c in per_item.values()
                                    if c > spec.workers_per_item),
            "lost_201s": len(seen - in_db), "in_db_not_seen_201": len(in_db - seen),
            "counts": spec.counts,
            "domain_answers": len(other),
            "domain_duplicate_pairs": sum(1 for c in other_pairs.values() if c > 1),
            "domain_items_over_quota": sum(1 for c in other_items.values() if c > 1)}


def explain_next_task(home: Path) -> list[str]:
    """SQLite's plan for next_task's candidate query, for the report."""
    import sqlite3

    con = sqlite3.connect(home / "loopworks.db")
    from sqlalchemy.dialects import sqlite

    from loopworks.labeling.statements import Q

    job_id = con.execute("SELECT id FROM label_jobs WHERE name='bench'").fetchone()[0]
    # The statement next_task runs, rendered with this job and worker 1.
    sql = str(Q.candidate.params(b_job=job_id, b_worker=1).compile(
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    args: tuple[Any, ...] = ()
    plan = [" ".join(str(c) for c in row[1:])
            for row in con.execute("EXPLAIN QUERY PLAN " + sql, args)]
    start = time.perf_counter()
    for _ in range(20):
        con.execute(sql, args).fetchall()
    plan.append(f"query alone: {(time.perf_counter() - start) / 20 * 1000:.1f} ms per call "
                "(sqlite3, after the run)")
    con.close()
    return plan


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server at ``url``; yields a URL using it, drops it."""
    import secrets

    import sqlalchemy as sa

    from loopworks.metadata.database import dispose_engine, open_engine

    base = open_engine(url)
    schema = f"lw_bench_{secrets.token_hex(4)}"
    with base.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    try:
        yield scoped
    finally:
        dispose_engine(scoped)
        with base.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def server_benchmark(n_items: int, n_workers: int, seconds: float, think: float = 0.0,
                     database_url: str | None = None) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if database_url:
            scoped = stack.enter_context(postgres_schema(database_url))
            stack.callback(os.environ.pop, "LOOPWORKS_DATABASE_URL", None)
            os.environ["LOOPWORKS_DATABASE_URL"] = scoped
            log(f"metadata on PostgreSQL ({database_url}, a fresh schema)")
        return _server_benchmark(n_items, n_workers, seconds, think, bool(database_url))


def _server_benchmark(n_items: int, n_workers: int, seconds: float, think: float,
                      postgres: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lw-labeling-bench-") as tmp:
        home = Path(tmp)
        os.environ["LOOPWORKS_HOME"] = str(home)
        log(f"creating {n_workers} workers and two {n_items}-item jobs ...")
        creation, tokens = create_jobs(home, n_items, n_workers)
        log(f"  list {creation['list_seconds']:.2f} s, manifest "
            f"{creation['manifest_seconds']:.2f} s")
        log(f"{n_workers} threads calling the labeling layer directly for {seconds / 2:.0f} s ...")
        domain = domain_load(home, n_workers, seconds / 2)
        log("... and with submit_and_next (answer + next task in one transaction) ...")
        domain["chained"] = domain_load(home, n_workers, seconds / 2, chain=True)
        with running_server(home, "bench-admin-token") as url:
            log(f"{n_workers} workers for {seconds:.0f} s against {url} ...")
            run = load(url, tokens, seconds)
            if think > 0:
                log(f"... and again with {think:.1f} s mean think time per task ...")
                paced = load(url, tokens, seconds, think)
                for worker, ids in paced.pop("recorded").items():
                    run["recorded"][worker] = run["recorded"].get(worker, []) + ids
                run["think"] = paced
        recorded = run.pop("recorded")
        log("checking the database ...")
        run["check"] = check_database(home, recorded)
        run["explain"] = [] if postgres else explain_next_task(home)
        run["domain"] = domain
        run["database"] = "postgresql" if postgres else "sqlite"
    return {"creation": creation, "server": run}


# ------------------------------------------------------------------------------ scale-out
class CpuMeter:
    """CPU seconds spent by the server's processes, PostgreSQL's and this one, between
    :meth:`start` and :meth:`stop` (from /proc through psutil; PostgreSQL's backends that
    end meanwhile are counted through the postmaster's children's times; the machine's
    other busy time is reported beside them)."""

    def __init__(self, server: subprocess.Popen[bytes]) -> None:
        self.server = server

    @staticmethod
    def _times(processes: list[Any]) -> dict[int, float]:
        import psutil

        out = {}
        for proc in processes:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
        return out

    def _sample(self) -> tuple[dict[int, float], dict[int, float], float, float]:
        import resource

        import psutil

        from _common import machine_busy_seconds

        root = psutil.Process(self.server.pid)
        server = self._times([root, *root.children(recursive=True)])
        postgres = [p for p in psutil.process_iter(["name"])
                    if (p.info["name"] or "").startswith("postgres")]
        database = self._times(postgres)
        # Backends that ended meanwhile (a pool's overflow connections) are reaped by the
        # postmaster: their CPU is in its children's times.
        for proc in postgres:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                database[-proc.pid] = t.children_user + t.children_system
        me = resource.getrusage(resource.RUSAGE_SELF)
        return server, database, me.ru_utime + me.ru_stime, machine_busy_seconds() or 0.0

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()

        def spent(a: dict[int, float], b: dict[int, float]) -> float:
            return sum(t - b.get(pid, 0.0) for pid, t in a.items())

        out = {"server_s": spent(after[0], self.before[0]),
               "database_s": spent(after[1], self.before[1]),
               "clients_s": after[2] - self.before[2]}
        out["others_s"] = max(0.0, after[3] - self.before[3] - sum(out.values()))
        return out


@contextlib.contextmanager
def count_statements(engine: Any) -> Iterator[dict[str, float]]:
    """Statements sent through ``engine`` and seconds spent in them (driver + database)."""
    import sqlalchemy as sa

    counts = {"statements": 0, "seconds": 0.0}
    started: dict[int, float] = {}

    def before(conn: Any, cursor: Any, *args: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    def after(conn: Any, cursor: Any, *args: Any) -> None:
        t0 = started.pop(id(cursor), None)
        counts["statements"] += 1
        if t0 is not None:
            counts["seconds"] += time.perf_counter() - t0

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    try:
        yield counts
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)


def statements_per_answer(home: Path, n: int = 500) -> dict[str, Any]:
    """One worker labels ``n`` items of the second job through the labeling layer, as the
    server does per request (``next_task``, then ``record_answer`` with an idempotency key
    and ``then_next``): statements and database milliseconds per answer."""
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata.database import database_url, dispose_engine, open_engine

    url = os.environ.get("LOOPWORKS_DATABASE_URL") or database_url(home)
    labeling = LabelingJobs(open_engine(url))
    worker = labeling.workforce.worker("w000")
    out: dict[str, Any] = {"answers": 0}
    with count_statements(labeling.engine) as plain:
        start = time.perf_counter()
        for _ in range(n):
            task = labeling.next_task("bench-manifest", worker, held_first=True)
            if task is None:
                break
            labeling.record_answer("bench-manifest", task.item_id, worker,
                                   LABELS[task.item_id % 3], idempotency_key=uuid.uuid4().hex)
            out["answers"] += 1
        elapsed = time.perf_counter() - start
    answers = max(1, out["answers"])
    out.update(statements=plain["statements"] / answers,
               database_ms=plain["seconds"] / answers * 1000,
               python_ms=(elapsed - plain["seconds"]) / answers * 1000)
    with count_statements(labeling.engine) as chained:
        task = labeling.next_task("bench-manifest", worker, held_first=True)
        done = 0
        while task is not None and done < n:
            receipt = labeling.record_answer("bench-manifest", task.item_id, worker,
                                             LABELS[task.item_id % 3], then_next=True,
                                             idempotency_key=uuid.uuid4().hex)
            task = receipt.next
            done += 1
    out["chained"] = {"answers": done, "statements": chained["statements"] / max(1, done),
                      "database_ms": chained["seconds"] / max(1, done) * 1000}
    labeling.webhooks.close()
    dispose_engine(url)
    return out


def scale_benchmark(n_items: int, n_workers: int, seconds: float, think: float,
                    processes: list[int], database_url: str | None) -> list[dict[str, Any]]:
    """Closed-loop answers/s and paced next-task latency for each number of server
    processes, on SQLite and (with ``database_url``) PostgreSQL, each on fresh state."""
    runs = []
    for database in ["sqlite", *(["postgresql"] if database_url else [])]:
        for count in processes:
            with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(
                    prefix="lw-labeling-scale-") as tmp:
                home = Path(tmp)
                if database == "postgresql":
                    assert database_url is not None
                    scoped = stack.enter_context(postgres_schema(database_url))
                    os.environ["LOOPWORKS_DATABASE_URL"] = scoped
                    stack.callback(os.environ.pop, "LOOPWORKS_DATABASE_URL", None)
                os.environ["LOOPWORKS_HOME"] = str(home)
                log(f"{database}, {count} server process(es): {n_workers} workers, "
                    f"{n_items} items ...")
                _, tokens = create_jobs(home, n_items, n_workers)
                run: dict[str, Any] = {"database": database, "processes": count}
                if count == processes[0]:
                    run["per_answer"] = statements_per_answer(home)
                started: list[subprocess.Popen[bytes]] = []
                with running_server(home, "bench-admin-token", count, started) as url:
                    meter = CpuMeter(started[0])
                    meter.start()
                    closed = load(url, tokens, seconds)
                    cpu = meter.stop()
                    closed["others_busy"] = cpu["others_s"] / (closed["seconds"]
                                                               * (os.cpu_count() or 1))
                    answers = max(1, closed["answers_201"])
                    closed["cpu_ms_per_answer"] = {k.removesuffix("_s"): v / answers * 1000
                                                   for k, v in cpu.items()}
                    recorded = closed.pop("recorded")
                    paced = load(url, tokens, seconds, think) if think > 0 else None
                    if paced is not None:
                        for worker, ids in paced.pop("recorded").items():
                            recorded[worker] = recorded.get(worker, []) + ids
                run["closed"] = closed
                run["paced"] = paced
                run["check"] = check_database(home, recorded)
                log(f"  {closed['answers_per_s']:.1f} answers/s closed loop; paced next p99 "
                    f"{paced['next']['p99_ms'] if paced else float('nan'):.1f} ms")
                runs.append(run)
    return runs


def scale_report(runs: list[dict[str, Any]]) -> list[str]:
    """The scale-out section: a row per (database, processes), ratios to one process."""
    lines = ["## Server processes", "",
             "Each row: a fresh home (and schema), `loopworks serve --workers N`, the "
             "closed loop (every worker asks and answers without pause), then the paced run "
             "(people's think time); CPU milliseconds per answer of the server processes, "
             "PostgreSQL's processes and the load-generating clients (all on this machine).",
             "",
             "| database | processes | answers/s (closed) | × 1 process | next p99 closed ms | "
             "next p99 paced ms | paced < 50 ms | server CPU ms/answer | database CPU "
             "ms/answer | clients CPU ms/answer | others' share of the machine | dup / over "
             "quota / lost |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    base: dict[str, float] = {}
    for r in runs:
        c, p, chk = r["closed"], r["paced"], r["check"]
        base.setdefault(r["database"], c["answers_per_s"])
        ratio = c["answers_per_s"] / base[r["database"]]
        cpu = c["cpu_ms_per_answer"]
        paced_p99 = p["next"]["p99_ms"] if p else None
        lines.append(
            f"| {r['database']} | {r['processes']} | {c['answers_per_s']:.1f} | {ratio:.2f} | "
            f"{c['next']['p99_ms']:.1f} | {fmt(paced_p99, '.1f')} | "
            f"{'—' if paced_p99 is None else 'yes' if paced_p99 < NEXT_P99_TARGET_MS else 'NO'}"
            f" | {cpu['server']:.2f} | "
            f"{cpu['database']:.2f} | {cpu['clients']:.2f} | {c['others_busy']:.0%} | "
            f"{chk['duplicate_pairs']} / "
            f"{chk['items_over_quota']} / {chk['lost_201s']} |")
    lines += ["", "Per answer through the labeling layer (one worker, no HTTP: `next_task` "
              "then `record_answer` with an idempotency key, as the two requests do; "
              "chained: `record_answer(then_next=True)`, one request):", "",
              "| database | statements | database ms | Python ms | chained statements | "
              "chained database ms | answers/s per database core (1000 / database CPU ms) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        a = r.get("per_answer")
        if not a:
            continue
        db_cpu = r["closed"]["cpu_ms_per_answer"]["database"]
        per_core = f"{1000 / db_cpu:.0f}" if r["database"] == "postgresql" and db_cpu else "—"
        lines.append(f"| {r['database']} | {a['statements']:.1f} | {a['database_ms']:.2f} | "
                     f"{a['python_ms']:.2f} | {a['chained']['statements']:.1f} | "
                     f"{a['chained']['database_ms']:.2f} | {per_core} |")
    return [*lines, ""]


# ------------------------------------------------------------------------------ report
def fmt(value: Any, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> str:
    lines = ["# Labeling benchmark", "",
             f"{results['machine']['when']}, {results['machine']['cpus']} CPUs, Python "
             f"{results['machine']['python']}", ""]
    crowd = results.get("crowd")
    if crowd:
        ck = crowd["crowdkit_version"]
        lines += ["## Consolidation accuracy against gold", "",
                  "crowd-kit: " + (f"{ck} ({crowd['crowdkit_python']})" if ck
                                   else "not available"),
                  "",
                  "| data set | answers | gold | method | loopworks acc | crowd-kit acc | "
                  "Δ | loopworks s | crowd-kit s |",
                  "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in crowd["rows"]:
            ours, theirs = r.get("ours_accuracy"), r.get("crowdkit_accuracy")
            delta = None if ours is None or theirs is None else ours - theirs
            lines.append(f"| {r['dataset']} | {r['answers']} | {r['gold']} | {r['method']} | "
                         f"{fmt(ours, '.4f')} | {fmt(theirs, '.4f')} | {fmt(delta, '+.4f')} | "
                         f"{fmt(r.get('ours_seconds'))} | {fmt(r.get('crowdkit_seconds'))} |")
        lines += ["", "— : not run (glad/mace run in loopworks only when crowd-kit is "
                  "importable in its environment).", ""]
    if results.get("scale"):
        lines += scale_report(results["scale"])
    server = results.get("server")
    if server:
        c, s = server["creation"], server["server"]
        chk = s["check"]
        met_create = max(c["list_seconds"], c["manifest_seconds"]) < CREATE_TARGET_S
        met_next = s["next"]["p99_ms"] < NEXT_P99_TARGET_MS
        lines += ["## Creating the job", "",
                  "| items | from | seconds | target | met |", "| ---: | --- | ---: | ---: | --- |",
                  f"| {c['items']} | list of texts | {c['list_seconds']:.2f} | < "
                  f"{CREATE_TARGET_S:.0f} s | "
                  f"{'yes' if c['list_seconds'] < CREATE_TARGET_S else 'NO'} |",
                  f"| {c['items']} | JSON Lines manifest | {c['manifest_seconds']:.2f} | < "
                  f"{CREATE_TARGET_S:.0f} s | "
                  f"{'yes' if c['manifest_seconds'] < CREATE_TARGET_S else 'NO'} |", "",
                  "## Server under load", "",
                  f"{s['workers']} concurrent workers (threads, own token and httpx.Client "
                  f"each), workers per item 1, {s['seconds']:.1f} s, `loopworks serve` on "
                  f"{'PostgreSQL' if s.get('database') == 'postgresql' else 'SQLite'}"
                  " in a temp home. Latency is client-side (includes the clients' "
                  "own Python overhead on the same machine).", "",
                  "| figure | value | target | met |", "| --- | ---: | ---: | --- |",
                  f"| answers recorded (201) | {s['answers_201']} | | |",
                  f"| throughput | {s['answers_per_s']:.1f} answers/s | | |",
                  f"| next-task p50 | {s['next']['p50_ms']:.1f} ms | | |",
                  f"| next-task p99 | {s['next']['p99_ms']:.1f} ms | < {NEXT_P99_TARGET_MS:.0f} "
                  f"ms | {'yes' if met_next else 'NO'} |",
                  f"| submit p50 | {s['submit']['p50_ms']:.1f} ms | | |",
                  f"| submit p99 | {s['submit']['p99_ms']:.1f} ms | | |",
                  f"| metadata WAL, largest seen | {s['wal_mib']['max']:.1f} MiB | bounded "
                  "(64 MiB + a second's writes) | |",
                  f"| HTTP statuses | {s['statuses']} | | |",
                  f"| client errors | {s['n_errors']} | 0 | "
                  f"{'yes' if s['n_errors'] == 0 else 'NO'} |", "",
                  *_think_rows(s.get("think")),
                  *_domain_rows(s.get("domain")),
                  "### Database check after the run", "",
                  "| check | value | expected |", "| --- | ---: | ---: |",
                  f"| answers in database | {chk['answers_in_db']} | "
                  f"{s['answers_201'] + s.get('think', {}).get('answers_201', 0)} (201s) |",
                  f"| duplicate (item, worker) pairs | {chk['duplicate_pairs']} | 0 |",
                  f"| items with more answers than workers per item | "
                  f"{chk['items_over_quota']} | 0 |",
                  f"| 201s missing from the database (lost) | {chk['lost_201s']} | 0 |",
                  f"| answers in database without a 201 seen | {chk['in_db_not_seen_201']} | 0 |",
                  f"| in-process runs: duplicate pairs / items over quota (of "
                  f"{chk.get('domain_answers', 0)} answers) | "
                  f"{chk.get('domain_duplicate_pairs', 0)} / "
                  f"{chk.get('domain_items_over_quota', 0)} | 0 / 0 |",
                  "", *(["### next_task candidate query: EXPLAIN QUERY PLAN (SQLite)", "",
                         "```", *s["explain"], "```", ""] if s["explain"] else [])]
        if s["errors"]:
            lines += ["First client errors:", "", "```", *s["errors"][:5], "```", ""]
        if not (met_create and met_next):
            lines += ["Target missed: see the query plan above and the notes in README.", ""]
    return "\n".join(lines)


def _domain_rows(d: dict[str, Any] | None) -> list[str]:
    if not d:
        return []
    return [f"Without HTTP: {d['workers']} threads in one process call `next_task` and "
            f"`submit` on the other {d['workers']}-worker job for {d['seconds']:.1f} s "
            f"(the labeling layer's own cost, {d.get('database', 'sqlite')}, same machine).", "",
            "| figure | value |", "| --- | ---: |",
            f"| throughput | {d['answers_per_s']:.1f} answers/s |",
            f"| next_task p50 / p99 | {d['next']['p50_ms']:.1f} / {d['next']['p99_ms']:.1f} ms |",
            f"| submit p50 / p99 | {d['submit']['p50_ms']:.1f} / {d['submit']['p99_ms']:.1f} ms |",
            f"| errors | {d['n_errors']} |", "",
            *([f"Chained: `submit_and_next` records the answer and leases the next task in "
               f"one transaction (p50/p99 are per answer): "
               f"{d['chained']['answers_per_s']:.1f} answers/s, p50 "
               f"{d['chained']['submit']['p50_ms']:.1f} ms, p99 "
               f"{d['chained']['submit']['p99_ms']:.1f} ms, errors "
               f"{d['chained']['n_errors']}.", ""] if d.get("chained") else [])]


def _think_rows(t: dict[str, Any] | None) -> list[str]:
    if not t:
        return []
    met = t["next"]["p99_ms"] < NEXT_P99_TARGET_MS
    return [f"With people's pace: each worker spends 0–{2 * t['think_seconds']:.1f} s "
            f"(uniform) on a task before answering, {t['seconds']:.1f} s, same server and "
            "job.", "",
            "| figure | value | target | met |", "| --- | ---: | ---: | --- |",
            f"| answers recorded (201) | {t['answers_201']} | | |",
            f"| throughput | {t['answers_per_s']:.1f} answers/s | | |",
            f"| next-task p50 | {t['next']['p50_ms']:.1f} ms | | |",
            f"| next-task p99 | {t['next']['p99_ms']:.1f} ms | < {NEXT_P99_TARGET_MS:.0f} ms "
            f"| {'yes' if met else 'NO'} |",
            f"| submit p50 | {t['submit']['p50_ms']:.1f} ms | | |",
            f"| submit p99 | {t['submit']['p99_ms']:.1f} ms | | |",
            f"| metadata WAL, largest seen | {t['wal_mib']['max']:.1f} MiB | | |",
            f"| HTTP statuses | {t['statuses']} | | |",
            f"| client errors | {t['n_errors']} | 0 | {'yes' if t['n_errors'] == 0 else 'NO'} |",
            ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=0.0,
                        help="Also run a phase where each worker spends 0..2x this many "
                             "seconds per task (a person reading) before answering.")
    parser.add_argument("--database-url", default=None,
                        help="Run the server part on this PostgreSQL server (a fresh schema, "
                             "dropped after), e.g. postgresql://127.0.0.1:5432/test; default "
                             "SQLite in a temp home.")
    parser.add_argument("--server-processes", default=None,
                        help="Comma-separated server process counts, e.g. 1,2: run the "
                             "scale-out section (SQLite, and PostgreSQL with --database-url) "
                             "instead of the single-server one.")
    parser.add_argument("--skip-crowd", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--crowdkit-python", type=Path, default=DEFAULT_CROWDKIT)
    parser.add_argument("--crowd-data", type=Path, default=DEFAULT_CROWD)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "options": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_crowd:
        results["crowd"] = crowd_benchmark(args.crowd_data, args.crowdkit_python)
    if args.server_processes:
        counts = [int(n) for n in args.server_processes.split(",")]
        results["scale"] = scale_benchmark(args.items, args.workers, args.seconds,
                                           args.think, counts, args.database_url)
    elif not args.skip_server:
        results.update(server_benchmark(args.items, args.workers, args.seconds, args.think,
                                        args.database_url))
        results["server"] = {"creation": results.pop("creation"),
                             "server": results.pop("server")}
    text = report(results)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    name = "labeling-scale" if args.server_processes else "labeling"
    (args.results / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    (args.results / f"{name}.json").write_text(json.dumps(results, indent=2, default=str)
                                                + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
