"""The feature store through its public API: groups, ingest, online, offline, SQL, search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopworks.errors import ConfigurationError, ConflictError, NotFoundError, ValidationError
from loopworks.featurestore import FeatureDefinition, FeatureStore, load_feature_definitions

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def reviews(n: int = 50, start: datetime = T0, offset: int = 0) -> pa.Table:
    rng = np.random.default_rng(offset)
    ids = np.arange(offset, offset + n)
    ratings = rng.integers(1, 6, n)
    sentiment = np.sign(ratings - 3)
    tokens = rng.integers(0, 30000, (n, 128), dtype=np.int32)
    return pa.table({
        "review_id": pa.array([f"r{i}" for i in ids]),
        "date": pa.array([start + timedelta(minutes=int(i)) for i in ids],
                         pa.timestamp("us", tz="UTC")),
        "sentiment": pa.array(sentiment, pa.int8()),
        "label_id": pa.array(sentiment + 1, pa.int8()),
        "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(tokens.ravel()), 128),
        "review_body": pa.array([f"review number {i}" for i in ids]),
        "split_type": pa.array(np.where(ids % 10 == 0, "test", "train")),
    })


@pytest.fixture(params=["embedded", "servers"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FeatureStore:
    """The same suite on SQLite + SQLite, and on PostgreSQL metadata + Redis online store."""
    if request.param == "embedded":
        with FeatureStore(home=tmp_path / "home") as fs:
            yield fs
        return
    database = request.getfixturevalue("postgres_url")
    online = request.getfixturevalue("redis_url")
    with FeatureStore(home=tmp_path / "home", database_url=database,
                      online_store_url=online) as fs:
        fs.online.drop("reviews")
        yield fs
        fs.online.drop("reviews")


@pytest.fixture
def group(store: FeatureStore):
    fg = store.create_feature_group("reviews", record_id="review_id", event_time="date",
                                    df=reviews(1), description="Product review features",
                                    tags={"team": "nlp"},
                                    transformation={"tokenizer": "bert", "max_seq_length": 128})
    return fg


def test_definitions_are_inferred_with_native_list_types() -> None:
    defs = {d.name: d for d in load_feature_definitions(reviews(3))}
    assert defs["input_ids"].type_name == "List<int32>[128]"
    assert defs["input_ids"].arrow_type == pa.list_(pa.int32(), 128)
    assert defs["sentiment"].type_name == "Integral"
    assert defs["date"].type_name == "Timestamp"
    emb = pd.DataFrame({"e": [np.ones(8, np.float32), np.zeros(8, np.float32)]})
    assert load_feature_definitions(emb)[0].type_name == "List<float32>[8]"


def test_create_describe_list_update_search_delete(store: FeatureStore, group) -> None:
    info = group.describe()
    assert info["record_id"] == "review_id" and info["tags"] == {"team": "nlp"}
    assert info["transformation"]["max_seq_length"] == 128
    assert {f["name"]: f["type_name"] for f in info["features"]}["input_ids"] == \
        "List<int32>[128]"
    with pytest.raises(ConflictError):
        store.create_feature_group("reviews", record_id="review_id", event_time="date",
                                   df=reviews(1))
    with pytest.raises(ConfigurationError, match="invalid feature group name"):
        store.create_feature_group("Bad-Name", record_id="review_id", event_time="date",
                                   df=reviews(1))
    with pytest.raises(ConfigurationError, match="event time feature 'when'"):
        store.create_feature_group("other", record_id="review_id", event_time="when",
                                   df=reviews(1))
    assert [s.name for s in store.list_feature_groups()] == ["reviews"]
    group.add_features([FeatureDefinition("helpful_votes", "Integral")])
    assert store.feature_group("reviews").spec.definition("helpful_votes").type_name == \
        "Integral"
    hits = store.search("nlp")
    assert hits[0]["feature_group"] == "reviews" and hits[0]["matched"] == ["tags"]
    by_type = store.search("list<int32>")
    assert [h["feature"] for h in by_type] == ["input_ids"]
    assert [h["feature"] for h in store.search("votes")] == ["helpful_votes"]
    group.ingest(reviews(10))
    store.delete_feature_group("reviews")
    with pytest.raises(NotFoundError):
        store.feature_group("reviews")
    assert not (store.home / "offline" / "reviews").exists()


def test_ingest_then_online_and_offline_reads(group) -> None:
    report = group.ingest(reviews(200), workers=2, batch_rows=64)
    assert report.rows == 200 and report.batches == 4 and report.online_written == 200
    record = group.get_record("r7")
    assert record["review_body"] == "review number 7"
    assert len(record["input_ids"]) == 128 and isinstance(record["input_ids"][0], int)
    assert record["date"] == T0 + timedelta(minutes=7)
    assert group.get_record("r7", features=["sentiment"]).keys() == {"review_id", "date",
                                                                     "sentiment"}
    assert group.get_record("nope") is None
    got = group.batch_get_record(["r1", "missing", "r2"])
    assert [r and r["review_id"] for r in got] == ["r1", None, "r2"]
    history = group.history()
    assert history.num_rows == 200
    assert history.schema.field("input_ids").type == pa.list_(pa.int32(), 128)
    assert {"write_time", "is_deleted"} <= set(history.column_names)


def test_invalid_rows_name_row_and_feature_and_write_nothing(group) -> None:
    good = reviews(100).to_pandas()
    bad = good.astype({"sentiment": object})
    bad.loc[70, "sentiment"] = "very"  # a string in an Integral feature
    with pytest.raises(ValidationError, match=r"row 70.*'sentiment'"):
        group.ingest(bad, batch_rows=32)
    short = reviews(5)
    ids = short.column("input_ids").combine_chunks()
    lists = ids.to_pylist()
    lists[3] = lists[3][:100]
    with pytest.raises(ValidationError, match=r"row 3.*'input_ids' has 100 values"):
        group.ingest(short.set_column(4, "input_ids", pa.array(lists, pa.list_(pa.int32()))))
    missing = good.copy()
    missing.loc[5, "review_id"] = None
    with pytest.raises(ValidationError, match=r"row 5: missing record identifier"):
        group.ingest(missing)
    no_time = good.copy()
    no_time.loc[9, "date"] = pd.NaT
    with pytest.raises(ValidationError, match=r"row 9: missing event time"):
        group.ingest(no_time)
    with pytest.raises(ValidationError, match="unknown feature"):
        group.ingest(good.assign(extra=1))
    assert group.get_record("r1") is None  # nothing of any bad batch was written
    assert not group._store.offline.exists("reviews")


def test_latest_event_wins_whatever_the_arrival_order(group) -> None:
    newer = reviews(1, start=T0 + timedelta(days=2)).to_pylist()[0] | {"review_body": "new"}
    older = reviews(1, start=T0).to_pylist()[0] | {"review_body": "old"}
    assert group.put_record(newer) is True
    assert group.put_record(older) is False  # an older event never overwrites
    assert group.get_record("r0")["review_body"] == "new"
    bodies = sorted(group.history().column("review_body").to_pylist())
    assert bodies == ["new", "old"]  # ...but it still lands in the offline history


def test_soft_and_hard_deletes(group) -> None:
    group.ingest(reviews(5))
    assert group.delete_record("r1", T0 + timedelta(days=1)) is True
    assert group.get_record("r1") is None
    assert group.delete_record("r2", T0 + timedelta(days=1), hard=True) is True
    assert group.get_record("r2") is None
    # a delete older than the stored record: refused (hard) or offline only (soft)
    with pytest.raises(ConflictError):
        group.delete_record("r3", T0 - timedelta(days=1), hard=True)
    assert group.delete_record("r4", T0 - timedelta(days=1)) is False
    assert group.get_record("r4") is not None
    tomb = group.history().to_pandas().query("is_deleted")
    assert sorted(tomb["review_id"]) == ["r1", "r2", "r4"]  # the refused delete left nothing


def test_sql_over_groups_and_as_of(store: FeatureStore, group, tmp_path: Path) -> None:
    group.ingest(reviews(100))
    first_write = datetime.now(UTC)
    group.ingest(reviews(20, offset=100))
    counts = store.query("SELECT split_type, count(*) AS n FROM reviews GROUP BY 1 ORDER BY 1")
    assert counts.to_dict("records") == [{"split_type": "test", "n": 12},
                                         {"split_type": "train", "n": 108}]
    earlier = store.query("SELECT count(*) AS n FROM reviews", as_of=first_write)
    assert earlier["n"][0] == 100
    lens = store.query("SELECT len(input_ids) AS l FROM reviews_latest LIMIT 1")
    assert lens["l"][0] == 128
    out = tmp_path / "q.parquet"
    store.query("SELECT review_id, input_ids FROM reviews", out=str(out))
    assert pa.parquet.read_table(out).num_rows == 120
    csv = tmp_path / "q.csv"
    store.query("SELECT review_id, input_ids FROM reviews LIMIT 2", out=str(csv))
    assert csv.read_text().splitlines()[0] == '"review_id","input_ids"'
    with pytest.raises(ValidationError, match="SQL error"):
        store.query("SELECT nope FROM reviews")
    versions = group.versions()
    assert len(versions) >= 2
    assert group.history(version=0).num_rows == 100


def test_ttl_per_group_and_per_record(store: FeatureStore) -> None:
    import time

    fg = store.create_feature_group(
        "short", record_id="id", event_time="ts", ttl_seconds=0.5,
        df=pd.DataFrame({"id": ["a"], "ts": [T0], "v": [1]}))
    fg.ingest(pd.DataFrame({"id": ["a", "b"], "ts": [T0, T0], "v": [1, 2]}))
    fg.put_record({"id": "c", "ts": T0, "v": 3}, ttl_seconds=3600)
    assert fg.get_record("a")["v"] == 1
    time.sleep(1.2)
    assert fg.batch_get_record(["a", "b"]) == [None, None]  # the group's TTL ran out
    assert fg.get_record("c")["v"] == 3  # its own, longer TTL
    assert fg.history().num_rows == 3  # expiry is an online matter: history keeps all
    store.delete_feature_group("short")


def test_a_batch_lands_in_both_stores_or_in_neither(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with FeatureStore(home=home) as good:
        fg = good.create_feature_group("reviews", record_id="review_id", event_time="date",
                                       df=reviews(1))
        fg.ingest(reviews(10))
        version = fg.versions()[0]["version"]
    # Same registry and offline store, but an online store that cannot be reached.
    with FeatureStore(home=home, online_store_url="redis://127.0.0.1:1/0") as broken:
        with pytest.raises(ConfigurationError, match="127.0.0.1:1"):
            broken.feature_group("reviews").ingest(reviews(5, offset=100))
    with FeatureStore(home=home) as check:
        group = check.feature_group("reviews")
        assert group.history().num_rows == 10  # the offline commit was rolled back
        assert group.versions()[0]["version"] > version  # ...by a restore, history intact
        assert group.get_record("r100") is None


class _FailingOn:
    """Wraps a real store; its ``method`` fails on the ``nth`` call (1-based): before doing
    anything, or (``in_commit_hook``) once the online rows are staged, before they commit."""

    def __init__(self, real: object, method: str, nth: int, *,
                 in_commit_hook: bool = False) -> None:
        self._real, self._method, self._nth = real, method, nth
        self._in_commit_hook = in_commit_hook
        self.calls = 0

    def __getattr__(self, name: str):
        attribute = getattr(self._real, name)
        if name != self._method:
            return attribute

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls != self._nth:
                return attribute(*args, **kwargs)
            if not self._in_commit_hook:
                raise OSError(f"injected failure of {name} call {self.calls}")
            hook = kwargs.pop("before_commit")

            def then_fail() -> None:
                hook()
                raise OSError("injected failure between staging and COMMIT")

            return attribute(*args, before_commit=then_fail, **kwargs)

        return call


@pytest.mark.parametrize("failing", ["offline append", "online write", "online commit"])
def test_batches_land_in_both_stores_or_in_neither_while_overlapping(
        tmp_path: Path, failing: str) -> None:
    """Ingest of 4 batches, the 3rd failing in one store: batches 1-2 are in both, 3-4 in
    neither, whichever store failed (the offline commits run ahead of the online writes)."""
    with FeatureStore(home=tmp_path / "home") as fs:
        fg = fs.create_feature_group("reviews", record_id="review_id", event_time="date",
                                     df=reviews(1))
        if failing == "offline append":
            fs._offline = _FailingOn(fs.offline, "append_versions", 3)
        else:
            fs._online = _FailingOn(fs.online, "write", 3,
                                    in_commit_hook=failing == "online commit")
        with pytest.raises(OSError, match="injected"):
            fg.ingest(reviews(40), batch_rows=10)
        assert sorted(fg.history().column("review_id").to_pylist()) == sorted(
            f"r{i}" for i in range(20))
        online = fg.batch_get_record([f"r{i}" for i in range(40)])
        assert [r is not None for r in online] == [True] * 20 + [False] * 20
        fg.ingest(reviews(40), batch_rows=10)  # the stores still work afterwards
        assert fg.history().num_rows == 60
        assert all(r is not None for r in fg.batch_get_record([f"r{i}" for i in range(40)]))


def test_concurrent_ingests_queue_and_none_is_lost(store: FeatureStore, group) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [reviews(40, offset=i * 40) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(group.ingest, batches))
    assert group.history().num_rows == 240
    ids = [f"r{i}" for i in range(240)]
    assert all(r is not None for r in group.batch_get_record(ids))
    versions = sorted(v["version"] for v in group.versions())
    assert versions == list(range(len(versions)))


def test_a_deleted_home_starts_afresh_in_the_same_process(tmp_path: Path) -> None:
    import shutil

    home = tmp_path / "home"
    for _ in range(2):
        with FeatureStore(home=home) as fs:
            fs.create_feature_group("reviews", record_id="review_id", event_time="date",
                                    df=reviews(1))
        shutil.rmtree(home)
