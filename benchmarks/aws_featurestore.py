"""SageMaker Feature Store over boto3: loopworks' /aws endpoint against moto's server, and
against loopworks' own JSON API, same machine, one run.

boto3 (unmodified, SigV4-signed by botocore) talks to a fresh `loopworks serve` and to
moto's standalone server (`moto[server]`, what users run to test SageMaker code locally):

* PutRecord records/s from 1 and from 8 threads (a client per thread);
* GetRecord p50 / p99 from one thread; the same record over loopworks' JSON API with httpx;
* DescribeFeatureGroup p50 / p99 on both servers;
* S3: ``upload_file`` and ``download_file`` of a 100 MB object (multipart, as boto3 does
  it above 8 MB), MB/s, against copying the same file on the local disk.

moto implements the feature-group control plane but not ``sagemaker-featurestore-runtime``
(no PutRecord or GetRecord): the run records what moto answered instead of a figure.

    python benchmarks/aws_featurestore.py [--records 2000] [--s3-mb 100] [--workdir DIR]

Results: ``benchmarks/results/aws-featurestore.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fresh_dir, log, machine_busy_seconds, own_cpu_seconds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REGION = "us-east-1"
DEFINITIONS = [{"FeatureName": "review_id", "FeatureType": "String"},
               {"FeatureName": "EventTime", "FeatureType": "Fractional"},
               {"FeatureName": "sentiment", "FeatureType": "Integral"},
               {"FeatureName": "review_body", "FeatureType": "String"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(command: list[str], url: str, env: dict[str, str], probe: str) -> Iterator[str]:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + probe, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def clients(endpoint: str, key: tuple[str, str]) -> tuple[Any, Any]:
    session = boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                    region_name=REGION)
    config = Config(retries={"max_attempts": 1}, max_pool_connections=16)
    return (session.client("sagemaker", endpoint_url=endpoint, config=config),
            session.client("sagemaker-featurestore-runtime", endpoint_url=endpoint,
                           config=config))


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "calls": len(ordered)}


def latencies(call: Callable[[int], Any], n: int) -> dict[str, float]:
    for i in range(min(50, n)):
        call(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def record(i: int) -> list[dict[str, str]]:
    return [{"FeatureName": "review_id", "ValueAsString": f"r{i:06d}"},
            {"FeatureName": "EventTime", "ValueAsString": f"{1714564800 + i}.5"},
            {"FeatureName": "sentiment", "ValueAsString": str(i % 3 - 1)},
            {"FeatureName": "review_body", "ValueAsString": "Sturdy and light. " * 10}]


def put_rate(make_runtime: Callable[[], Any], group: str, records: int, threads: int,
             offset: int) -> dict[str, float]:
    runtimes = [make_runtime() for _ in range(threads)]
    share = records // threads

    def work(t: int) -> None:
        runtime = runtimes[t]
        for i in range(share):
            runtime.put_record(FeatureGroupName=group, Record=record(offset + t * share + i))

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    seconds = time.perf_counter() - start
    return {"records": share * threads, "seconds": round(seconds, 3),
            "records_per_s": round(share * threads / seconds, 1)}


def create(sagemaker: Any, group: str) -> None:
    sagemaker.create_feature_group(
        FeatureGroupName=group, RecordIdentifierFeatureName="review_id",
        EventTimeFeatureName="EventTime", FeatureDefinitions=DEFINITIONS,
        OnlineStoreConfig={"EnableOnlineStore": True},
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": "s3://bench/offline"}},
        RoleArn="arn:aws:iam::000000000000:role/bench")


def s3_rates(endpoint: str, key: tuple[str, str], source: Path) -> dict[str, float]:
    """upload_file and download_file of ``source`` through boto3, MB/s."""
    session = boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                    region_name=REGION)
    s3 = session.client("s3", endpoint_url=endpoint, config=Config(
        retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="bench-transfer")
    megabytes = source.stat().st_size / 1e6
    start = time.perf_counter()
    s3.upload_file(str(source), "bench-transfer", "object.bin")
    up = time.perf_counter() - start
    target = source.with_suffix(".back")
    start = time.perf_counter()
    s3.download_file("bench-transfer", "object.bin", str(target))
    down = time.perf_counter() - start
    same = target.stat().st_size == source.stat().st_size
    target.unlink()
    return {"upload_mb_s": round(megabytes / up, 1), "download_mb_s": round(megabytes / down, 1),
            "round_trip_intact": same}


def disk_rate(source: Path) -> dict[str, float]:
    """Copying the file on the same disk (read and write, fsynced), MB/s."""
    import shutil

    target = source.with_suffix(".copy")
    start = time.perf_counter()
    with open(source, "rb") as fin, open(target, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    seconds = time.perf_counter() - start
    target.unlink()
    return {"copy_mb_s": round(source.stat().st_size / 1e6 / seconds, 1)}


def run_loopworks(workdir: Path, records: int, source: Path | None = None
                  ) -> dict[str, Any]:
    import loopworks

    home = fresh_dir(workdir / "loopworks") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("bench", role="admin")
        key = lw.access_keys.issue("bench")
        token = lw.workforce.issue_api_token("bench")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LOOPWORKS_HOME=str(home), LOOPWORKS_API_TOKEN="bench-token")
    command = [sys.executable, "-m", "loopworks.cli", "serve", "--port", str(port)]
    out: dict[str, Any] = {}
    with server(command, url, env, "/healthz"):
        sagemaker, runtime = clients(f"{url}/aws", key)
        create(sagemaker, "bench-reviews")
        log("loopworks: PutRecord from 1 thread")
        out["put_1_thread"] = put_rate(lambda: clients(f"{url}/aws", key)[1], "bench-reviews",
                                       records, 1, 0)
        log("loopworks: PutRecord from 8 threads")
        out["put_8_threads"] = put_rate(lambda: clients(f"{url}/aws", key)[1],
                                        "bench-reviews", records * 2, 8, records)
        log("loopworks: GetRecord through boto3")
        out["get_boto3"] = latencies(lambda i: runtime.get_record(
            FeatureGroupName="bench-reviews",
            RecordIdentifierValueAsString=f"r{i % records:06d}"), records)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as api:
            log("loopworks: the same record over the JSON API")
            out["get_json_api"] = latencies(lambda i: api.get(
                f"/api/feature-groups/bench-reviews/records/r{i % records:06d}"), records)
        out["describe"] = latencies(lambda i: sagemaker.describe_feature_group(
            FeatureGroupName="bench-reviews"), 500)
        if source is not None:
            log("loopworks: S3 upload_file / download_file")
            out["s3"] = s3_rates(f"{url}/aws", key, source)
    return out


def upload_rate(endpoint: str, key: tuple[str, str], source: Path) -> float:
    """boto3's upload_file of ``source`` to a bucket that exists, MB/s."""
    session = boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                    region_name=REGION)
    s3 = session.client("s3", endpoint_url=endpoint, config=Config(
        retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
    start = time.perf_counter()
    s3.upload_file(str(source), "bench-transfer", "object.bin")
    return round(source.stat().st_size / 1e6 / (time.perf_counter() - start), 1)


def run_ceiling(records: int, source: Path | None = None) -> dict[str, Any]:
    """boto3 against a server that answers ``200 {}`` at once: what the client side alone
    allows from one process (its signing, serialising and parsing, under the GIL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(Path(__file__).resolve().parent / "_null_aws.py"),
               str(port)]
    key = ("LWNULLNULLNULLNULLNU", "x" * 40)
    out: dict[str, Any] = {}
    with server(command, url, dict(os.environ), "/"):
        out["put_1_thread"] = put_rate(lambda: clients(url, key)[1], "bench-reviews",
                                       records, 1, 0)
        out["put_8_threads"] = put_rate(lambda: clients(url, key)[1], "bench-reviews",
                                        records * 2, 8, records)
        runtime = clients(url, key)[1]
        out["get_boto3"] = latencies(lambda i: runtime.get_record(
            FeatureGroupName="bench-reviews", RecordIdentifierValueAsString=f"r{i}"), records)
        if source is not None:
            out["upload_mb_s"] = upload_rate(url, key, source)
    return out


def run_moto(workdir: Path, records: int, source: Path | None = None) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, AWS_DEFAULT_REGION=REGION)
    command = [sys.executable, "-m", "moto.server", "-p", str(port)]
    out: dict[str, Any] = {}
    with server(command, url, env, "/moto-api/"):
        sagemaker, runtime = clients(url, ("testing", "testing"))
        create(sagemaker, "bench-reviews")
        out["describe"] = latencies(lambda i: sagemaker.describe_feature_group(
            FeatureGroupName="bench-reviews"), 500)
        for operation, call in (("PutRecord", lambda: runtime.put_record(
                FeatureGroupName="bench-reviews", Record=record(0))),
                ("GetRecord", lambda: runtime.get_record(
                    FeatureGroupName="bench-reviews", RecordIdentifierValueAsString="r0"))):
            try:
                call()
                out[operation] = "answered"
            except ClientError as exc:
                status = exc.response["ResponseMetadata"].get("HTTPStatusCode")
                out[operation] = f"not implemented (HTTP {status})"
            except Exception as exc:  # noqa: BLE001 - what moto did, recorded as such
                out[operation] = f"{type(exc).__name__}: {str(exc)[:80]}"
        if source is not None:
            log("moto: S3 upload_file / download_file")
            out["s3"] = s3_rates(url, ("testing", "testing"), source)
    return out


def report(lw: dict[str, Any], moto: dict[str, Any], ceiling: dict[str, Any],
           meta: dict[str, Any]) -> str:
    def ratio(ours: float, theirs: float) -> str:
        return f"{theirs / ours:.1f}×" if ours else "–"

    def share(ours: float, most: float) -> str:
        return f"{ours / most:.0%}" if most else "–"

    rows = [
        ("PutRecord, 1 thread (records/s)", lw["put_1_thread"]["records_per_s"],
         moto.get("PutRecord", "–"), "", ceiling["put_1_thread"]["records_per_s"],
         share(lw["put_1_thread"]["records_per_s"], ceiling["put_1_thread"]["records_per_s"])),
        ("PutRecord, 8 threads (records/s)", lw["put_8_threads"]["records_per_s"],
         moto.get("PutRecord", "–"), "", ceiling["put_8_threads"]["records_per_s"],
         share(lw["put_8_threads"]["records_per_s"],
               ceiling["put_8_threads"]["records_per_s"])),
        ("GetRecord p50 / p99 (ms)",
         f"{lw['get_boto3']['p50_ms']} / {lw['get_boto3']['p99_ms']}",
         moto.get("GetRecord", "–"), "",
         f"{ceiling['get_boto3']['p50_ms']} / {ceiling['get_boto3']['p99_ms']}", ""),
        ("DescribeFeatureGroup p50 / p99 (ms)",
         f"{lw['describe']['p50_ms']} / {lw['describe']['p99_ms']}",
         f"{moto['describe']['p50_ms']} / {moto['describe']['p99_ms']}",
         ratio(lw["describe"]["p50_ms"], moto["describe"]["p50_ms"]), "", ""),
    ]
    lines = ["# SageMaker Feature Store over boto3: loopworks vs moto", "",
             f"Run {meta['finished']} on {meta['machine']} ({meta['cpus']} CPUs); other "
             f"processes kept the machine {meta['others_busy']:.0%} busy during the run.", "",
             "| operation | loopworks /aws | moto server | moto ÷ loopworks (time) | "
             "boto3 alone (null server) | loopworks ÷ boto3 alone |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if "s3" in lw and "s3" in moto:
        lines += ["", f"S3, one {meta['s3_mb']} MB object (boto3 upload_file / download_file, "
                  "multipart):", "",
                  "| | loopworks /aws | moto server | local disk copy | loopworks ÷ disk | "
                  "boto3 alone (null server) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |",
                  f"| upload MB/s | {lw['s3']['upload_mb_s']} | {moto['s3']['upload_mb_s']} | "
                  f"{meta['disk']['copy_mb_s']} | "
                  f"{share(lw['s3']['upload_mb_s'], meta['disk']['copy_mb_s'])} | "
                  f"{ceiling.get('upload_mb_s', '–')} |",
                  f"| download MB/s | {lw['s3']['download_mb_s']} | "
                  f"{moto['s3']['download_mb_s']} | {meta['disk']['copy_mb_s']} | "
                  f"{share(lw['s3']['download_mb_s'], meta['disk']['copy_mb_s'])} | – |"]
    lines += ["", f"The same record over loopworks' JSON API (httpx): p50 "
              f"{lw['get_json_api']['p50_ms']} ms, p99 {lw['get_json_api']['p99_ms']} ms.",
              "", "moto has no sagemaker-featurestore-runtime: the cells say what it answered.",
              "", "boto3 alone: the same clients against a server that answers `200 {}` at "
              "once (`benchmarks/_null_aws.py`), so the column is the most one Python process "
              "of boto3 can send on this machine; the last column is how much of it loopworks "
              "reaches. The client and the server share the machine's cores.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--s3-mb", type=int, default=100)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/loopworks-bench-aws"))
    args = parser.parse_args()
    source = None
    if args.s3_mb:
        fresh_dir(args.workdir)
        source = args.workdir / "object.bin"
        with open(source, "wb") as fh:
            for _ in range(args.s3_mb):
                fh.write(os.urandom(1 << 20))
    busy_before, own_before, wall = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
    lw = run_loopworks(args.workdir, args.records, source)
    log("moto")
    moto = run_moto(args.workdir, args.records, source)
    log("boto3 against a null server")
    ceiling = run_ceiling(args.records, source)
    # The disk's figure varies run to run (page cache, writeback): the median of three.
    disk = sorted((disk_rate(source) for _ in range(3)), key=lambda d: d["copy_mb_s"])[1] \
        if source is not None else None
    busy_after, seconds = machine_busy_seconds(), time.monotonic() - wall
    own = own_cpu_seconds() - own_before
    cpus = os.cpu_count() or 1
    meta = {"finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": platform.machine(), "cpus": cpus,
            "others_busy": max(0.0, ((busy_after or 0) - (busy_before or 0) - own)
                               / (seconds * cpus)),
            "s3_mb": args.s3_mb, "disk": disk}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "aws-featurestore.json").write_text(json.dumps(
        {"meta": meta, "loopworks": lw, "moto": moto, "boto3_alone": ceiling}, indent=2))
    text = report(lw, moto, ceiling, meta)
    (RESULTS / "aws-featurestore.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
