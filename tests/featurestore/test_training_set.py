"""Point-in-time training sets: built to catch leakage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from loopworks.errors import ConfigurationError
from loopworks.featurestore import FeatureStore, training_set_from_manifest

T = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T + timedelta(days=n)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    with FeatureStore(home=tmp_path / "home") as fs:
        ratings = fs.create_feature_group(
            "ratings", record_id="review_id", event_time="ts", definitions=None,
            df=pd.DataFrame({"review_id": ["a"], "ts": [day(0)], "stars": [1]}))
        labels = fs.create_feature_group(
            "labels", record_id="review_id", event_time="ts",
            df=pd.DataFrame({"review_id": ["a"], "ts": [day(0)], "label": ["x"]}))
        # review a: stars 1 on day 1, 5 on day 3 (the future for an example on day 2)
        ratings.ingest(pd.DataFrame({"review_id": ["a", "a", "b"], "ts": [day(1), day(3), day(1)],
                                     "stars": [1, 5, 4]}))
        labels.ingest(pd.DataFrame({"review_id": ["a", "b"], "ts": [day(2.5), day(0.5)],
                                    "label": ["neg", "pos"]}))
        yield fs


def entity(*rows: tuple[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"review_id": [r for r, _ in rows],
                         "event_time": [day(d) for _, d in rows]})


def test_values_as_of_each_event_time_never_later(store: FeatureStore) -> None:
    ents = entity(("a", 0.5), ("a", 2), ("a", 3), ("a", 9), ("b", 2), ("zz", 2), ("a", 2))
    ents["target"] = range(len(ents))
    out = store.training_set(ents, ["ratings:stars", "labels:label"], output="arrow")
    assert out.num_rows == len(ents)  # exactly one row per entity row, in order
    assert out["target"].to_pylist() == list(range(len(ents)))
    # before any record and an unknown id give null; day 3's value is not seen on day 2
    assert out["stars"].to_pylist() == [None, 1, 5, 5, 4, None, 1]
    assert out["label"].to_pylist() == [None, None, "neg", "neg", "pos", None, None]


def test_deleted_records_are_honoured(store: FeatureStore) -> None:
    ratings = store.feature_group("ratings")
    ratings.delete_record("b", day(1.5))
    ents = entity(("b", 1.2), ("b", 2))
    out = store.training_set(ents, ["ratings:stars"])
    assert out["stars"][0] == 4 and pd.isna(out["stars"][1])
    kept = store.training_set(ents, ["ratings:stars"], include_deleted=True)
    assert kept["stars"].tolist() == [4, 4]


def test_ttl_range_as_of_and_versions(store: FeatureStore, tmp_path: Path) -> None:
    ents = entity(("a", 2), ("a", 10))
    ttl = store.training_set(ents, ["ratings:stars"], ttl_seconds=2 * 86400)
    assert ttl["stars"][0] == 1 and pd.isna(ttl["stars"][1])  # day 3 value is 7 days old
    ranged = store.training_set(ents, ["ratings:stars"], end=day(2))
    assert ranged["stars"].tolist() == [1, 1]
    before = datetime.now(UTC)
    store.feature_group("ratings").put_record({"review_id": "a", "ts": day(1), "stars": 2})
    corrected = store.training_set(ents, ["ratings:stars"])
    assert corrected["stars"][0] == 2  # a relabel is a new event: latest write wins
    as_was = store.training_set(ents, ["ratings:stars"], as_of=before)
    assert as_was["stars"][0] == 1  # "train on the labels as they were on date T"
    manifest = tmp_path / "set.json"
    store.training_set(ents, ["ratings:stars"], manifest=str(manifest), as_of=before)
    store.feature_group("ratings").put_record({"review_id": "a", "ts": day(1), "stars": 3})
    rebuilt = training_set_from_manifest(store, str(manifest), ents)
    assert rebuilt["stars"].tolist()[0] == 1


def test_typed_output_and_errors(store: FeatureStore) -> None:
    out = store.training_set(entity(("a", 5)), ["ratings:*", "labels:label"], output="arrow")
    assert isinstance(out, pa.Table)
    assert out.schema.field("stars").type == pa.int64()
    assert out.schema.field("label").type == pa.string()
    with pytest.raises(ConfigurationError, match="group:feature"):
        store.training_set(entity(("a", 1)), ["stars"])
    with pytest.raises(ConfigurationError, match="event time column"):
        store.training_set(pd.DataFrame({"review_id": ["a"]}), ["ratings:stars"])
    full = store.training_set(entity(("a", 5)), ["ratings:stars"], full_feature_names=True)
    assert "ratings__stars" in full.columns


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sorted_lookup_matches_duckdb_asof_and_never_leaks(tmp_path: Path, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    with FeatureStore(home=tmp_path / f"h{seed}") as fs:
        group = fs.create_feature_group(
            "g", record_id="id", event_time="ts",
            df=pd.DataFrame({"id": ["x"], "ts": [day(0)], "v": [0.5]}))
        for _ in range(3):  # several writes: same (id, ts) pairs rewritten later
            n = 300
            batch = pd.DataFrame({
                "id": [f"i{k}" for k in rng.integers(0, 40, n)],
                "ts": [day(float(d)) for d in rng.integers(0, 20, n)],
                "v": rng.random(n)})
            # one value per (id, ts) in a batch: equal write times have no defined order
            group.ingest(batch.drop_duplicates(["id", "ts"], keep="last"))
        for k in rng.integers(0, 40, 10):
            group.delete_record(f"i{k}", day(float(rng.integers(0, 20))))
        ents = pd.DataFrame({"id": [f"i{k}" for k in rng.integers(0, 45, 2000)],
                             "event_time": [day(float(d)) for d in rng.uniform(-1, 21, 2000)]})
        ents.loc[::97, "id"] = None  # a missing id matches nothing
        for options in ({}, {"ttl_seconds": 3 * 86400}, {"include_deleted": True},
                        {"start": day(5), "end": day(15)}):
            fast = fs.training_set(ents, ["g:v"], output="arrow", **options)
            asof = fs.training_set(ents, ["g:v"], output="arrow", method="duckdb", **options)
            assert fast.equals(asof), options
        # no leakage: every value found was written with an event time <= the entity's
        out = fs.training_set(ents, ["g:v"])
        history = group.history().to_pandas()
        live = history[~history["is_deleted"]]
        for row in out.dropna().sample(200, random_state=seed).itertuples():
            match = live[(live["id"] == row.id) & (live["v"] == row.v)]
            assert (match["ts"] <= row.event_time).all() and len(match) >= 1


def test_recreated_group_is_not_served_from_an_old_read(tmp_path: Path) -> None:
    with FeatureStore(home=tmp_path / "h") as fs:
        ents = entity(("a", 5))
        for value in (1, 2):  # same name, same version numbers, different data
            g = fs.create_feature_group(
                "again", record_id="review_id", event_time="ts",
                df=pd.DataFrame({"review_id": ["a"], "ts": [day(0)], "v": [value]}))
            g.ingest(pd.DataFrame({"review_id": ["a"], "ts": [day(1)], "v": [value]}))
            assert fs.training_set(ents, ["again:v"])["v"].tolist() == [value]
            fs.delete_feature_group("again")


@pytest.mark.parametrize("rows_per_id", [1, 3, 60])
def test_asof_indices_match_a_brute_force_lookup(rows_per_id: int) -> None:
    """One row per id (the direct path), a few (stepping back) and many (binary search);
    equal event times told apart by write time; tombstones; TTL."""
    import numpy as np

    from loopworks.featurestore.pointintime import asof_indices, encode_ids

    rng = np.random.default_rng(rows_per_id)
    ids = [f"k{i}" for i in range(30)]
    h_ids = [ids[i] for i in rng.integers(0, 25, 25 * rows_per_id)]
    h_t = rng.integers(0, 40, len(h_ids)) * 1_000_000  # ties in event time are common
    h_w = rng.permutation(len(h_ids))  # distinct write times
    h_del = rng.random(len(h_ids)) < 0.1
    e_ids = [ids[i] for i in rng.integers(0, 30, 3000)]
    e_t = rng.integers(-2, 42, 3000) * 1_000_000 + 500_000
    micros = pa.timestamp("us", tz="UTC")
    for ttl in (None, 5.0):
        got = asof_indices(
            encode_ids(pa.array(e_ids)), pa.array(e_t, micros), pa.array(h_ids),
            pa.array(h_t, micros), pa.array(h_w, micros), pa.array(h_del),
            ttl_seconds=ttl).to_pylist()
        for e_id, when, index in zip(e_ids, e_t, got, strict=True):
            candidates = [j for j in range(len(h_ids)) if h_ids[j] == e_id and h_t[j] <= when]
            best = max(candidates, key=lambda j: (h_t[j], h_w[j]), default=None)
            if best is not None and (h_del[best] or (ttl and when - h_t[best] > ttl * 1e6)):
                best = None
            assert index == best, (e_id, when)
    strangers = encode_ids(pa.array(["x", None, "y"]))  # ids the history does not have
    assert asof_indices(strangers, pa.array([1, 2, 3], micros), pa.array(h_ids),
                        pa.array(h_t, micros), pa.array(h_w, micros),
                        pa.array(h_del)).to_pylist() == [None] * 3


def test_clearing_the_history_cache_reads_the_tables_again(store: FeatureStore) -> None:
    from loopworks.featurestore import sql

    ents = entity(("a", 2), ("b", 2))
    first = store.training_set(ents, ["ratings:stars", "labels:label"])
    assert sql._HISTORY_CACHE
    sql.clear_history_cache()
    assert not sql._HISTORY_CACHE
    assert store.training_set(ents, ["ratings:stars", "labels:label"]).equals(first)
    assert len(sql._HISTORY_CACHE) == 2
