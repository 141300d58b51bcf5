"""The feature store's offline store on S3 (moto's standalone server) against local disk.

One run, the same data on both: review feature records (id, event time over 60 days,
sentiment, label id, star rating, score, split) and an entity table of random ids and times.
For each offline store (a folder; ``s3://`` on ``python -m moto.server`` on this machine,
found through the usual AWS environment), in a fresh home:

* ingest: ``group.ingest(table)`` records/s (the Delta offline store and the SQLite online
  store, as users ingest), and the offline append alone (``store.offline.append``);
* point-in-time join: ``store.training_set(entity, features)`` seconds, its cache of Delta
  histories cleared first, so each run reads the table (cold).

moto is a Python (Werkzeug) server sharing the machine's cores: the S3 figures bound what
the S3 code path costs here, not what AWS would do. Results go to
``benchmarks/results/offline_s3.{md,json}``; see ``benchmarks/README.md``.

    python benchmarks/offline_s3.py [--records 200000] [--entity-rows 100000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the moto fixture the tests use

from _common import RunMeter, fresh_dir, log  # noqa: E402

RESULTS = HERE / "results"
START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 60
SEED = 0
FEATURES = ["reviews:sentiment", "reviews:label_id", "reviews:star_rating", "reviews:score"]


def make_data(records: int, entity_rows: int) -> tuple[Any, Any]:
    """The review records and the entity table (fixed seed)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(SEED)
    micros = pa.timestamp("us", tz="UTC")
    start = int(START.timestamp() * 1e6)
    span = DAYS * 86_400 * 1_000_000
    stars = rng.integers(1, 6, records)
    sentiment = np.where(stars <= 2, -1, np.where(stars == 3, 0, 1))
    reviews = pa.table({
        "review_id": pa.array([f"r{i:07d}" for i in range(records)]),
        "event_time": pa.array(start + rng.integers(0, span, records), pa.int64()).cast(micros),
        "sentiment": pa.array(sentiment, pa.int64()),
        "label_id": pa.array(sentiment + 1, pa.int64()),
        "star_rating": pa.array(stars, pa.int64()),
        "score": pa.array(rng.random(records)),
        "split_type": pa.array(rng.choice(["train", "validation", "test"], records,
                                          p=[0.9, 0.05, 0.05])),
    })
    ids = rng.integers(0, int(records * 1.05), entity_rows)  # ~5% unknown ids
    entity = pa.table({
        "review_id": pa.array([f"r{i:07d}" for i in ids]),
        "event_time": pa.array(start + rng.integers(0, span + 7 * 86_400_000_000, entity_rows),
                               pa.int64()).cast(micros),
        "target": pa.array(np.arange(entity_rows)),
    })
    return reviews, entity


def best(repeat: int, run: Callable[[], float]) -> dict[str, Any]:
    """Run ``repeat`` times; the fastest seconds and every run's."""
    runs = [run() for _ in range(repeat)]
    return {"seconds": round(min(runs), 3), "runs": [round(r, 3) for r in runs]}


def measure(name: str, offline_url: str, home: Path, reviews: Any, entity: Any,
            repeat: int) -> dict[str, Any]:
    """Ingest, offline append and point-in-time join with the offline store at a URL."""
    import pyarrow as pa

    from loopworks.featurestore import FeatureStore
    from loopworks.featurestore.definitions import EVENT_TIME_TYPE
    from loopworks.featurestore.sql import clear_history_cache

    records = reviews.num_rows
    out: dict[str, Any] = {"offline_store_url": offline_url}
    with FeatureStore(home, offline_store_url=offline_url) as store:
        timings = []
        for k in range(repeat):
            group = store.create_feature_group(f"reviews{k}" if k else "reviews",
                                               record_id="review_id", event_time="event_time",
                                               df=reviews.slice(0, 1))
            log(f"{name}: ingest {records:,} records into {group.name}")
            began = time.perf_counter()
            report = group.ingest(reviews, workers=2)
            timings.append(time.perf_counter() - began)
            assert report.rows == records
        out["ingest"] = {"seconds": round(min(timings), 3), "runs": [round(t, 3) for t in timings],
                         "records_per_s": round(records / min(timings))}

        now = pa.array([datetime.now(UTC)] * records, EVENT_TIME_TYPE)
        history = reviews.append_column("write_time", now).append_column(
            "is_deleted", pa.array([False] * records))
        counter = iter(range(repeat))

        def append() -> float:
            log(f"{name}: offline append of {records:,} records")
            began = time.perf_counter()
            store.offline.append(f"appended{next(counter)}", history, event_time="event_time")
            return time.perf_counter() - began

        out["offline_append"] = best(repeat, append)
        out["offline_append"]["records_per_s"] = round(records / out["offline_append"]["seconds"])

        joined: list[Any] = []

        def join() -> float:
            log(f"{name}: point-in-time join of {entity.num_rows:,} entity rows")
            clear_history_cache()
            began = time.perf_counter()
            joined[:] = [store.training_set(entity, FEATURES, output="arrow")]
            return time.perf_counter() - began

        out["join"] = best(repeat, join)
        out["join"]["non_null"] = {f.split(":")[1]: joined[0].num_rows
                                   - joined[0].column(f.split(":")[1]).null_count
                                   for f in FEATURES}
        out["version"] = store.offline.version("reviews")
    out["result"] = joined[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--entity-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each measure N times and keep the fastest")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/loopworks-bench-offline-s3"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    import loopworks

    from _moto import create_bucket, moto_env, moto_server

    work = fresh_dir(args.workdir)
    log(f"making {args.records:,} records and {args.entity_rows:,} entity rows")
    reviews, entity = make_data(args.records, args.entity_rows)
    meter = RunMeter()
    with moto_server() as endpoint, moto_env(endpoint):
        create_bucket(endpoint, "offline-bench")
        disk = measure("disk", str(work / "disk" / "offline"), work / "disk" / "home",
                       reviews, entity, args.repeat)
        s3 = measure("s3", "s3://offline-bench/offline", work / "s3" / "home",
                     reviews, entity, args.repeat)
    same = disk.pop("result").equals(s3.pop("result"))
    import deltalake
    import moto

    meta = meter.meta(records=args.records, entity_rows=args.entity_rows, repeat=args.repeat,
                      loopworks=loopworks.__version__, deltalake=deltalake.__version__,
                      moto=moto.__version__, joins_equal=same)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "offline_s3.json").write_text(
        json.dumps({"meta": meta, "disk": disk, "s3": s3}, indent=2))

    def row(label: str, unit: str, key: str, field: str, higher_is_better: bool) -> str:
        a, b = disk[key][field], s3[key][field]
        ratio = a / b if higher_is_better else b / a
        shown = (lambda v: f"{v:,}") if unit == "records/s" else (lambda v: f"{v:.2f}")
        return f"| {label} | {unit} | {shown(a)} | {shown(b)} | {ratio:.1f}× |"

    command = "python benchmarks/offline_s3.py" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in (("records", args.records),
                                                     ("entity_rows", args.entity_rows),
                                                     ("repeat", args.repeat))
        if v != parser.get_default(k))
    text = "\n".join([
        "# Offline store on S3 (moto's server) against local disk", "",
        f"Run {meta['finished']} by `{command}` on {meta['machine']} ({meta['cpus']} CPUs); "
        f"other processes kept the machine {meta['others_busy']:.0%} busy. loopworks "
        f"{meta['loopworks']}, deltalake {meta['deltalake']}, moto {meta['moto']}.", "",
        f"{args.records:,} review records (7 columns), {args.entity_rows:,} entity rows; "
        f"each figure is the best of {args.repeat}.", "",
        "| measure | unit | local disk | moto S3 | disk ÷ S3 (time) |",
        "| --- | --- | ---: | ---: | ---: |",
        row(f"`group.ingest`, {args.records:,} records (offline + online)", "records/s",
            "ingest", "records_per_s", True),
        row(f"offline append alone, {args.records:,} records", "records/s",
            "offline_append", "records_per_s", True),
        row(f"point-in-time join, {args.entity_rows:,} entity rows, {len(FEATURES)} features",
            "s", "join", "seconds", False), "",
        f"The two joins are {'equal' if same else 'DIFFERENT'} (same rows, values and order).",
        "moto is a Python server on the same two cores: the S3 column is what the S3 code "
        "path (delta-rs' object store, HTTP, moto) costs here, not a forecast for AWS.", ""])
    (args.results / "offline_s3.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
