"""Online feature reads over HTTP per server process and per core, on Redis and SQLite.

A feature group of ``--records`` review records (128-int ``input_ids`` and
``attention_mask``, sentiment, label) is ingested; then ``loopworks serve --workers N``
answers GET /api/feature-groups/{group}/records/{id} for random ids from ``--clients``
threads (each one kept-alive ``http.client`` connection) for ``--seconds``. For each
(online store, N): reads/s, p50/p99, and CPU milliseconds per read of the server's
processes, Redis and the clients, so the reads one core serves is known; plus the bytes
Redis keeps per record. These are the per-core figures docs/scale.md plans with.

    python benchmarks/online_reads.py [--records 100000] [--clients 16] [--seconds 15]
                                      [--processes 1,2] [--redis-url redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from _common import RunMeter, log

HERE = Path(__file__).resolve().parent
TOKEN = "bench-reads-token"


def records(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 50_000, size=(n, 128), dtype=np.int64)
    lengths = rng.integers(20, 128, size=n)
    mask = (np.arange(128)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0], ids = 0, ids * mask  # padded with 0 past each review's length
    stars = rng.integers(1, 6, size=n)
    return pd.DataFrame({
        "review_id": [f"r{i}" for i in range(n)],
        "event_time": [datetime(2026, 1, 1, tzinfo=UTC)] * n,
        "sentiment": np.sign(stars - 3), "label_id": np.sign(stars - 3) + 1,
        "input_ids": list(ids), "attention_mask": list(mask)})


@contextlib.contextmanager
def server(home: Path, env: dict[str, str], processes: int) -> Iterator[tuple[str, Any]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_file = (home / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "loopworks.cli", "serve", "--port",
                             str(port), "--workers", str(processes)],
                            env={**os.environ, **env}, stdout=log_file,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((home / "server.log").read_text())
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(15)
        log_file.close()


def cpu_of(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def server_pids(proc: Any) -> list[int]:
    import psutil

    root = psutil.Process(proc.pid)
    return [root.pid, *(c.pid for c in root.children(recursive=True))]


def redis_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["name"])
            if (p.info["name"] or "").startswith("redis-server")]


def read_load(url: str, group: str, n_records: int, clients: int, seconds: float
              ) -> dict[str, Any]:
    parts = urlsplit(url)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    gate = threading.Barrier(clients + 1)
    deadline = 0.0

    def work(index: int) -> None:
        rng = random.Random(index)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        gate.wait()
        try:
            while time.monotonic() < deadline:
                path = f"/api/feature-groups/{group}/records/r{rng.randrange(n_records)}"
                t0 = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                latencies[index].append((time.perf_counter() - t0) * 1000)
                if response.status != 200 or b"input_ids" not in body:
                    errors.append(f"{response.status}: {body[:100]!r}")
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    flat = np.array([x for xs in latencies for x in xs])
    return {"reads": int(flat.size), "seconds": elapsed, "reads_per_s": flat.size / elapsed,
            "p50_ms": float(np.percentile(flat, 50)) if flat.size else None,
            "p99_ms": float(np.percentile(flat, 99)) if flat.size else None,
            "errors": errors[:5]}


def run(store: str, online_url: str, frame: pd.DataFrame, processes: list[int],
        clients: int, seconds: float) -> list[dict[str, Any]]:
    from loopworks.featurestore import FeatureStore

    out = []
    with tempfile.TemporaryDirectory(prefix="lw-reads-") as tmp:
        home = Path(tmp)
        group = f"reads_{secrets.token_hex(3)}"
        env = {"LOOPWORKS_HOME": str(home), "LOOPWORKS_API_TOKEN": TOKEN,
               **({"LOOPWORKS_ONLINE_STORE_URL": online_url} if online_url else {})}
        memory = None
        if store == "redis":
            import redis

            client = redis.Redis.from_url(online_url)
            before = client.info("memory")["used_memory"]
        with FeatureStore(home, online_store_url=online_url or None) as fs:
            log(f"{store}: ingesting {len(frame):,} records ...")
            fs.create_feature_group(group, record_id="review_id", event_time="event_time",
                                    df=frame.head(10)).ingest(frame)
        if store == "redis":
            memory = (client.info("memory")["used_memory"] - before) / len(frame)
        for count in processes:
            with server(home, env, count) as (url, proc):
                read_load(url, group, len(frame), clients, 2.0)  # warm up
                pids = server_pids(proc)
                r0 = redis_pids() if store == "redis" else []
                s0, d0 = cpu_of(pids), cpu_of(r0)
                me0 = resource.getrusage(resource.RUSAGE_SELF)
                result = read_load(url, group, len(frame), clients, seconds)
                me1 = resource.getrusage(resource.RUSAGE_SELF)
                reads = max(1, result["reads"])
                result["cpu_ms_per_read"] = {
                    "server": (cpu_of(pids) - s0) / reads * 1000,
                    "store": (cpu_of(r0) - d0) / reads * 1000,
                    "clients": ((me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime))
                    / reads * 1000}
            result.update(store=store, processes=count, bytes_per_record=memory)
            log(f"  {count} process(es): {result['reads_per_s']:,.0f} reads/s, p99 "
                f"{result['p99_ms']:.2f} ms, server CPU "
                f"{result['cpu_ms_per_read']['server']:.3f} ms/read")
            out.append(result)
        if store == "redis":
            for key in client.scan_iter(f"*{group}*", count=10_000):
                client.delete(key)
            client.close()
    return out


def report(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Online reads over HTTP, per process and per core", "",
             f"{meta['finished']}, {meta['cpus']} CPUs, others kept the machine "
             f"{meta['others_busy']:.0%} busy (the servers and Redis count as others).", "",
             "| online store | server processes | reads/s | p50 ms | p99 ms | server CPU "
             "ms/read | store CPU ms/read | clients CPU ms/read | reads/s per server core | "
             "bytes per record in Redis |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        cpu = r["cpu_ms_per_read"]
        per_core = 1000 / cpu["server"] if cpu["server"] else float("nan")
        size = f"{r['bytes_per_record']:,.0f}" if r["bytes_per_record"] else "—"
        lines.append(f"| {r['store']} | {r['processes']} | {r['reads_per_s']:,.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {cpu['server']:.3f} | "
                     f"{cpu['store']:.3f} | {cpu['clients']:.3f} | {per_core:,.0f} | {size} |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    meter = RunMeter()
    frame = records(args.records)
    processes = [int(n) for n in args.processes.split(",")]
    runs = run("redis", args.redis_url, frame, processes, args.clients, args.seconds)
    runs += run("sqlite", "", frame, processes, args.clients, args.seconds)
    text = report(runs, meta := meter.meta())
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "online_reads.md").write_text(text, encoding="utf-8")
    (args.results / "online_reads.json").write_text(
        json.dumps({"meta": meta, "options": vars(args), "runs": runs}, indent=2,
                   default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
