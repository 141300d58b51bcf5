"""The Feast side of ``benchmarks/featurestore.py``: the same measurements with Feast.

Run by the benchmark in Feast's own virtual environment (it imports nothing from loopworks).
Feast uses its local provider, its SQLite online store and a file offline store (``duckdb``,
or ``file`` = Dask), configured by a ``feature_store.yaml`` this script writes. Phases:

* ``ingest``: a fresh repo; the offline "ingest" of a file source is writing its Parquet
  file; then ``apply`` (the definitions) and ``materialize`` (offline -> SQLite online
  store) per feature view. Also ``write_to_online_store`` of the reviews DataFrame (the
  push path, online only).
* ``online``: ``get_online_features(...).to_dict()`` for one id and for 100 ids.
* ``join``: ``get_historical_features(entity_df, features).to_df()`` (point in time).

Each phase prints one JSON line (the last line of stdout).

    python _feast_side.py ingest --repo DIR --reviews R.parquet --labels L.parquet
    python _feast_side.py online --repo DIR --reviews R.parquet [--singles 2000]
    python _feast_side.py join --repo DIR --entity E.parquet --features reviews:sentiment,...
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("FEAST_USAGE", "False")  # no usage telemetry
warnings.filterwarnings("ignore")

REVIEW_FEATURES = ("sentiment", "label_id", "input_ids", "attention_mask", "review_body",
                   "split_type")
LABEL_FEATURES = ("label", "confidence")
PROJECT = "bench"


def _yaml(repo: Path, offline: str) -> str:
    data = repo / "data"
    return (f"project: {PROJECT}\n"
            f"registry: {data / 'registry.db'}\n"
            "provider: local\n"
            "online_store:\n"
            "  type: sqlite\n"
            f"  path: {data / 'online.db'}\n"
            "offline_store:\n"
            f"  type: {offline}\n"
            "entity_key_serialization_version: 3\n")


def definitions(repo: Path) -> list[Any]:
    """Entity, file sources and the two feature views (as in a feature_repo.py)."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float64, Int32, Int64, String

    review = Entity(name="review", join_keys=["review_id"], value_type=ValueType.STRING)
    ttl = timedelta(days=3650)  # Feast drops values older than the TTL; loopworks has none
    reviews = FeatureView(
        name="reviews", entities=[review], ttl=ttl,
        schema=[Field(name="sentiment", dtype=Int64), Field(name="label_id", dtype=Int64),
                Field(name="input_ids", dtype=Array(Int32)),
                Field(name="attention_mask", dtype=Array(Int32)),
                Field(name="review_body", dtype=String), Field(name="split_type", dtype=String)],
        source=FileSource(name="reviews_source", path=str(repo / "data" / "reviews.parquet"),
                          timestamp_field="date"), online=True)
    labels = FeatureView(
        name="labels", entities=[review], ttl=ttl,
        schema=[Field(name="label", dtype=Int64), Field(name="confidence", dtype=Float64)],
        source=FileSource(name="labels_source", path=str(repo / "data" / "labels.parquet"),
                          timestamp_field="date"), online=True)
    return [review, reviews, labels]


def open_store(repo: Path, offline: str) -> Any:
    """The repo's store, its feature_store.yaml (re)written for this offline store."""
    from feast import FeatureStore

    (repo / "feature_store.yaml").write_text(_yaml(repo, offline), encoding="utf-8")
    return FeatureStore(repo_path=str(repo))


def phase_ingest(args: argparse.Namespace) -> dict[str, Any]:
    import feast
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    repo = args.repo
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "data").mkdir(parents=True)
    tables = {"reviews": pq.read_table(args.reviews), "labels": pq.read_table(args.labels)}
    out: dict[str, Any] = {"feast": feast.__version__, "offline_store": args.offline,
                           "groups": {}}

    # Offline "ingest": a file source's offline store is its Parquet file.
    for name, table in tables.items():
        start = time.perf_counter()
        pq.write_table(table, repo / "data" / f"{name}.parquet")
        out["groups"][name] = {"rows": table.num_rows,
                               "offline_write_seconds": time.perf_counter() - start}
    store = open_store(repo, args.offline)
    start = time.perf_counter()
    store.apply(definitions(repo))
    out["apply_seconds"] = time.perf_counter() - start

    for name, table in tables.items():
        bounds = pc.min_max(table.column("date"))
        first, last = bounds["min"].as_py(), bounds["max"].as_py()
        start = time.perf_counter()
        store.materialize(first - timedelta(seconds=1), last + timedelta(seconds=1),
                          feature_views=[name])
        out["groups"][name]["materialize_seconds"] = time.perf_counter() - start

    if args.push_rows:  # the push path: a DataFrame straight into the online store
        frame = tables["reviews"].slice(0, args.push_rows).to_pandas()
        start = time.perf_counter()
        store.write_to_online_store("reviews", frame)
        out["write_to_online_store"] = {"rows": len(frame),
                                        "seconds": time.perf_counter() - start}
    return out


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] / 1e6

    return {"n": len(ordered), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "mean_ms": sum(ordered) / len(ordered) / 1e6, "max_ms": ordered[-1] / 1e6}


def phase_online(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    store = open_store(args.repo, args.offline)
    ids = pq.read_table(args.reviews, columns=["review_id"]).column(0).to_pylist()
    rng = random.Random(1)
    features = [f"reviews:{f}" for f in REVIEW_FEATURES]

    def get(batch: list[str]) -> dict[str, list[Any]]:
        return store.get_online_features(
            features=features, entity_rows=[{"review_id": i} for i in batch]).to_dict()

    for _ in range(50):  # warm up: registry cache, connection, imports
        get([rng.choice(ids)])
    probe = get([ids[0]])
    if probe["sentiment"][0] is None or len(probe["input_ids"][0]) != 128:
        raise SystemExit(f"Feast online read of {ids[0]!r} looks wrong: {probe}")
    single = []
    for _ in range(args.singles):
        chosen = [rng.choice(ids)]
        start = time.perf_counter_ns()
        get(chosen)
        single.append(time.perf_counter_ns() - start)
    batch = []
    for _ in range(args.batches):
        chosen = rng.sample(ids, args.batch_size)
        start = time.perf_counter_ns()
        result = get(chosen)
        batch.append(time.perf_counter_ns() - start)
    assert len(result["sentiment"]) == args.batch_size
    return {"features": features, "single": _percentiles(single),
            "batch": _percentiles(batch) | {"size": args.batch_size}}


def phase_join(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    store = open_store(args.repo, args.offline)
    entity = pq.read_table(args.entity)
    if args.rows:
        entity = entity.slice(0, args.rows)
    frame = entity.to_pandas().rename(columns={"event_time": "event_timestamp"})
    features = args.features.split(",")
    start = time.perf_counter()
    job = store.get_historical_features(entity_df=frame, features=features)
    result = job.to_df()
    seconds = time.perf_counter() - start
    names = [f.split(":", 1)[1] for f in features]
    return {"rows": len(frame), "rows_out": len(result), "features": features,
            "seconds": seconds,
            "non_null": {n: int(result[n].notna().sum()) for n in names if n in result},
            "checksum": {n: float(result[n].fillna(0).sum()) for n in names
                         if n in result and result[n].dtype.kind in "if"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("ingest", "online", "join"))
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--reviews", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--entity", type=Path)
    parser.add_argument("--rows", type=int, default=0, help="join: first N entity rows")
    parser.add_argument("--features", default="")
    parser.add_argument("--offline", default="duckdb", choices=("duckdb", "file"))
    parser.add_argument("--push-rows", type=int, default=0)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)
    args.repo = args.repo.resolve()
    run = {"ingest": phase_ingest, "online": phase_online, "join": phase_join}[args.phase]
    result = run(args)
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
