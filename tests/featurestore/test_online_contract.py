"""One contract for every online store backend: the embedded SQLite store and Redis.

The Redis backend runs against the server at ``LOOPWORKS_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``) and is skipped, naming the URL, when none answers there. Every
test uses its own feature group and drops only that group's keys.
"""

from __future__ import annotations

import math
import os
import random
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from loopworks.errors import ConfigurationError, ConflictError, ValidationError
from loopworks.featurestore.definitions import FeatureDefinition, FeatureType
from loopworks.featurestore.online import (
    OnlineStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
    open_online_store,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ID, ET = "review_id", "event_time"

DEFINITIONS = [
    FeatureDefinition(ID, FeatureType.STRING),
    FeatureDefinition(ET, FeatureType.TIMESTAMP),
    FeatureDefinition("title", FeatureType.STRING),
    FeatureDefinition("rating", FeatureType.INTEGRAL),
    FeatureDefinition("score", FeatureType.FRACTIONAL),
    FeatureDefinition("recommended", FeatureType.BOOLEAN),
    FeatureDefinition("reviewed_at", FeatureType.TIMESTAMP),
    FeatureDefinition("input_ids", FeatureType.LIST, "int32", 128),
    FeatureDefinition("embedding", FeatureType.LIST, "float32", 8),
    FeatureDefinition("tags", FeatureType.LIST, "int64"),
    FeatureDefinition("words", FeatureType.LIST, "string"),
    FeatureDefinition("flags", FeatureType.LIST, "bool", 3),
]
SMALL = [FeatureDefinition(ID, FeatureType.STRING), FeatureDefinition(ET, FeatureType.TIMESTAMP),
         FeatureDefinition("rating", FeatureType.INTEGRAL)]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def table(rows: list[dict[str, Any]], definitions: list[FeatureDefinition] = SMALL) -> pa.Table:
    """A conformed table: every definition a column, in its canonical Arrow type."""
    schema = pa.schema([pa.field(d.name, d.arrow_type) for d in definitions])
    return pa.Table.from_pylist([{d.name: r.get(d.name) for d in definitions} for r in rows],
                                schema=schema)


def small(record_id: str, seconds: float, rating: int) -> dict[str, Any]:
    return {ID: record_id, ET: at(seconds), "rating": rating}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _redis_url() -> str:
    return os.environ.get("LOOPWORKS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """Each backend in turn; Redis is skipped when no server answers."""
    if request.param == "sqlite":
        backend: OnlineStore = SQLiteOnlineStore(tmp_path / "online.sqlite")
    else:
        redis = pytest.importorskip("redis")
        url = _redis_url()
        probe = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            probe.ping()
        except redis.RedisError:
            pytest.skip(f"no Redis server at {url}")
        finally:
            probe.close()
        backend = RedisOnlineStore(url)
    yield backend
    backend.close()


@pytest.fixture
def groups(store: OnlineStore) -> Iterator[Callable[[], str]]:
    """Unique group names; their records are dropped afterwards (only theirs)."""
    made: list[str] = []

    def make() -> str:
        made.append(f"test_{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    for name in made:
        store.drop(name)


@pytest.fixture
def group(groups: Callable[[], str]) -> str:
    return groups()


def write(store: OnlineStore, group: str, rows: list[dict[str, Any]],
          definitions: list[FeatureDefinition] = SMALL, **kwargs: Any) -> int:
    return store.write(group, table(rows, definitions), definitions, record_id=ID,
                       event_time=ET, **kwargs)


def read(store: OnlineStore, group: str, ids: list[str], definitions=SMALL, **kwargs: Any):
    return store.read(group, ids, definitions, **kwargs)


def delete(store: OnlineStore, group: str, record_id: str, seconds: float, *, hard: bool,
           definitions: list[FeatureDefinition] = SMALL) -> bool:
    return store.delete(group, record_id, at(seconds), hard=hard, definitions=definitions,
                        record_id_name=ID, event_time_name=ET)


def test_backends_follow_the_protocol(store: OnlineStore) -> None:
    assert isinstance(store, OnlineStore)


def test_every_type_round_trips_exactly(store: OnlineStore, group: str) -> None:
    full = {
        ID: "r:1:colons/and spaces", ET: datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "title": "Très chic ✓ \"quoted\" a\x00b", "rating": 2**63 - 1, "score": 0.1,
        "recommended": True, "reviewed_at": datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        "input_ids": [0, 1, -1, 2**31 - 1, -(2**31)] + list(range(123)),
        "embedding": [0.5, -1.25, 3.0, 0.0, 2.0**-20, 2.0**100, -7.5, 2.0],  # float32-exact
        "tags": [2**62, -5, 0], "words": ["", "é", "a:b", "x\x00y"],
        "flags": [True, False, True],
    }
    nulls = {ID: "r2", ET: at(1), **{d.name: None for d in DEFINITIONS[2:]}}
    edge = {ID: "r3", ET: at(2), "title": "", "rating": -(2**63), "score": float("-inf"),
            "recommended": False, "tags": [], "words": [], "input_ids": [7] * 128}
    nan = {ID: "r4", ET: at(3), "score": float("nan")}
    written = write(store, group, [full, nulls, edge, nan], DEFINITIONS)
    assert written == 4

    got = read(store, group, ["r:1:colons/and spaces", "r2", "r3", "r4"], DEFINITIONS)

    assert got[0] == full
    assert got[1] == nulls
    assert got[2] == {**{d.name: None for d in DEFINITIONS}, **edge}
    assert got[2]["tags"] == [] and got[1]["tags"] is None  # empty list is not null
    assert math.isnan(got[3]["score"])
    assert got[0][ET].tzinfo is not None and got[0][ET].utcoffset() == timedelta(0)
    assert type(got[0]["rating"]) is int and type(got[0]["recommended"]) is bool
    assert type(got[0]["input_ids"]) is list and type(got[0]["input_ids"][0]) is int


def test_fixed_length_integer_lists_round_trip_in_every_shape(store: OnlineStore,
                                                              group: str) -> None:
    """Padding cut off, narrow widths, negatives, full-width rows and 10,000 random rows."""
    definitions = [*SMALL, FeatureDefinition("ids", FeatureType.LIST, "int32", 6),
                   FeatureDefinition("big", FeatureType.LIST, "int64", 3)]
    shapes = [
        ([5, 9, 1, 1, 1, 1], [1, 2, 2]),           # padding run: kept [5, 9, 1]
        ([1, 1, 1, 1, 1, 1], [0, 0, 0]),           # one run: kept [1]
        ([0, 255, 256, 65535, 0, 0], [2**40, 0, 0]),  # uint16 / int64 widths
        ([-1, 3, 3, 3, 3, 3], [-(2**63), 2**63 - 1, 7]),  # negatives: full width
        ([2**31 - 1, -(2**31), 4, 5, 6, 7], [-1, -2, -3]),  # nothing to cut: stored raw
        ([3, 3, 3, 3, 3, 4], [5, 6, 6]),           # equal values before a different last
    ]
    rng = random.Random(7)
    for i in range(10_000):
        run = rng.randrange(7)
        scale = rng.choice([1, 200, 60_000, 2**31 - 1])
        ids = [rng.randint(-scale if i % 5 == 0 else 0, scale) for _ in range(6 - run)]
        ids += [rng.randint(0, 3)] * run
        shapes.append((ids, [rng.randint(-(2**63), 2**63 - 1) if i % 3 else 4
                             for _ in range(3)]))
    rows = [{**small(f"r{i}", 1, i), "ids": ids, "big": big}
            for i, (ids, big) in enumerate(shapes)]
    assert write(store, group, rows, definitions) == len(rows)
    got = read(store, group, [r[ID] for r in rows], definitions)
    assert [(g["ids"], g["big"]) for g in got] == shapes
    assert read(store, group, ["r0"], definitions, features=["ids"])[0]["ids"] == shapes[0][0]


def test_sqlite_reads_raw_list_blobs_of_earlier_versions(tmp_path: Path) -> None:
    """Blobs of exactly length x itemsize bytes are the raw elements (the old encoding)."""
    definitions = [*SMALL, FeatureDefinition("ids", FeatureType.LIST, "int32", 4)]
    store = SQLiteOnlineStore(tmp_path / "online.sqlite")
    try:
        write(store, "g", [{**small("a", 1, 1), "ids": [1, 1, 1, 1]}], definitions)
        raw = struct.pack("<4i", 7, 1, 1, 1)
        store._db.execute('UPDATE "lw_online_g" SET ids = ? WHERE _lw_id = ?', (raw, "a"))
        assert read(store, "g", ["a"], definitions)[0]["ids"] == [7, 1, 1, 1]
        stored = store._db.execute('SELECT ids FROM "lw_online_g"').fetchone()[0]
        assert stored == raw
        write(store, "g", [{**small("a", 2, 1), "ids": [7, 1, 1, 1]}], definitions)
        stored = store._db.execute('SELECT ids FROM "lw_online_g"').fetchone()[0]
        assert stored == bytes([1, 7, 1])  # uint8 width, padding cut
        assert read(store, "g", ["a"], definitions)[0]["ids"] == [7, 1, 1, 1]
    finally:
        store.close()


def _open_at_once(path: Path, n: int) -> tuple[list[SQLiteOnlineStore], list[BaseException]]:
    """``n`` threads open the store at ``path`` at the same moment."""
    start = threading.Barrier(n)
    opened: list[SQLiteOnlineStore] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            opened.append(SQLiteOnlineStore(path))
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return opened, errors


def test_sqlite_store_opened_by_many_at_once_on_a_new_file(tmp_path: Path) -> None:
    """Switching a new file to WAL does not wait for another connection doing the same
    (SQLite gives "database is locked" at once): every opener must still succeed."""
    for trial in range(40):
        opened, errors = _open_at_once(tmp_path / f"online-{trial}.sqlite", 8)
        for store in opened:
            store.close()
        assert not errors, errors[:1]
        assert len(opened) == 8


def test_list_with_a_null_element_is_rejected(store: OnlineStore, group: str) -> None:
    definitions = [*SMALL, FeatureDefinition("ids", FeatureType.LIST, "int32", 2)]
    rows = [{**small("a", 1, 1), "ids": [1, 2]}, {**small("b", 1, 1), "ids": [3, None]}]
    with pytest.raises(ValidationError, match="row 1: feature 'ids'") as info:
        write(store, group, rows, definitions)
    assert info.value.row == 1
    assert read(store, group, ["a"], definitions) == [None]  # nothing of the batch landed


def test_newer_wins_whatever_the_arrival_order(store: OnlineStore, group: str) -> None:
    assert write(store, group, [small("a", 20, 2)]) == 1
    assert write(store, group, [small("a", 10, 1)]) == 0
    assert read(store, group, ["a"]) == [small("a", 20, 2)]
    assert write(store, group, [small("a", 20, 3)]) == 1  # equal event time: later write wins
    assert read(store, group, ["a"]) == [small("a", 20, 3)]
    assert write(store, group, [small("a", 30, 4)]) == 1
    assert read(store, group, ["a"]) == [small("a", 30, 4)]


def test_duplicates_within_a_batch_keep_the_latest(store: OnlineStore, group: str) -> None:
    rows = [small("a", 1, 1), small("a", 3, 3), small("b", 5, 1), small("a", 2, 2),
            small("b", 5, 2), small("c", 1, 9)]
    assert write(store, group, rows) == 3
    assert read(store, group, ["a", "b", "c"]) == [
        small("a", 3, 3), small("b", 5, 2), small("c", 1, 9)]  # tie: the last row


def test_write_counts_only_records_actually_written(store: OnlineStore, group: str) -> None:
    assert write(store, group, [small(i, 10, 0) for i in "abc"]) == 3
    assert write(store, group, [small("a", 11, 1), small("b", 9, 1), small("c", 5, 1),
                                small("d", 1, 1)]) == 2
    assert [r["rating"] for r in read(store, group, list("abcd"))] == [1, 0, 0, 1]
    assert write(store, group, []) == 0


def test_features_limit_the_keys_but_keep_id_and_event_time(store: OnlineStore,
                                                            group: str) -> None:
    write(store, group, [{ID: "a", ET: at(1), "score": 0.5, "input_ids": [1] * 128}],
          DEFINITIONS)
    got = read(store, group, ["a", "b"], DEFINITIONS, features=["score", "input_ids"])
    assert got == [{ID: "a", ET: at(1), "score": 0.5, "input_ids": [1] * 128}, None]
    assert list(got[0]) == [ID, ET, "score", "input_ids"]
    with pytest.raises(ConfigurationError, match="nope"):
        read(store, group, ["a"], DEFINITIONS, features=["nope"])


def test_missing_ids_are_none_in_order(store: OnlineStore, group: str) -> None:
    assert read(store, group, ["x", "y"]) == [None, None]  # group never written
    write(store, group, [small("a", 1, 1), small("b", 1, 2)])
    got = read(store, group, ["b", "zz", "a", "b", ""])
    assert got == [small("b", 1, 2), None, small("a", 1, 1), small("b", 1, 2), None]
    assert read(store, group, []) == []


def test_soft_delete_hides_and_blocks_older_writes(store: OnlineStore, group: str) -> None:
    write(store, group, [small("a", 20, 1), small("b", 20, 1)])
    assert delete(store, group, "a", 30, hard=False) is True
    assert read(store, group, ["a", "b"]) == [None, small("b", 20, 1)]
    assert write(store, group, [small("a", 25, 2)]) == 0  # older than the tombstone
    assert read(store, group, ["a"]) == [None]
    assert write(store, group, [small("a", 40, 3)]) == 1  # newer: revives the id
    assert read(store, group, ["a"]) == [small("a", 40, 3)]


def test_soft_delete_of_an_unknown_id_leaves_a_tombstone(store: OnlineStore,
                                                         group: str) -> None:
    assert delete(store, group, "ghost", 50, hard=False) is True
    assert write(store, group, [small("ghost", 40, 1)]) == 0
    assert read(store, group, ["ghost"]) == [None]


def test_hard_delete_removes_the_record(store: OnlineStore, group: str) -> None:
    write(store, group, [small("a", 20, 1)])
    assert delete(store, group, "a", 30, hard=True) is True
    assert read(store, group, ["a"]) == [None]
    assert delete(store, group, "never-stored", 30, hard=True) is True
    # Nothing is remembered: an older event written later lands again (documented).
    assert write(store, group, [small("a", 10, 2)]) == 1
    assert read(store, group, ["a"]) == [small("a", 10, 2)]


def test_delete_older_than_the_stored_record(store: OnlineStore, group: str) -> None:
    write(store, group, [small("a", 50, 1)])
    with pytest.raises(ConflictError) as info:
        delete(store, group, "a", 30, hard=True)
    message = str(info.value)
    assert group in message and "'a'" in message
    assert at(50).isoformat() in message and at(30).isoformat() in message
    assert info.value.feature_group == group and info.value.record_id == "a"
    assert delete(store, group, "a", 30, hard=False) is False
    assert read(store, group, ["a"]) == [small("a", 50, 1)]
    assert delete(store, group, "a", 50, hard=False) is True  # equal time: applies
    assert read(store, group, ["a"]) == [None]


def test_ttl_expires_records_after_write_time(store: OnlineStore, group: str) -> None:
    ttl = 1.0
    write(store, group, [small("a", 20, 1), small("c", 20, 1)], ttl_seconds=ttl)
    write(store, group, [small("b", 20, 1)])
    start = time.monotonic()
    assert read(store, group, ["a", "b"]) == [small("a", 20, 1), small("b", 20, 1)]
    assert delete(store, group, "c", 30, hard=False) is True  # tombstones never expire
    wait_until(lambda: read(store, group, ["a"]) == [None])
    assert time.monotonic() - start > ttl / 2
    assert read(store, group, ["b"]) == [small("b", 20, 1)]
    assert write(store, group, [small("c", 25, 2)]) == 0
    # An expired record is gone: it no longer blocks an older event.
    assert write(store, group, [small("a", 10, 2)]) == 1
    assert read(store, group, ["a"]) == [small("a", 10, 2)]
    with pytest.raises(ConfigurationError, match="ttl_seconds"):
        write(store, group, [small("c", 1, 1)], ttl_seconds=0)


def test_expiry_time_of_a_live_record(store: OnlineStore, group: str) -> None:
    """What GetRecord's ExpirationTimeResponse reports: the TTL's end, for live records."""
    before = datetime.now(UTC)
    write(store, group, [small("a", 20, 1)], ttl_seconds=3600)
    write(store, group, [small("b", 20, 1)])
    expires = store.expires_at(group, "a")
    assert expires is not None
    assert abs((expires - before).total_seconds() - 3600) < 60
    assert store.expires_at(group, "b") is None  # no TTL
    assert store.expires_at(group, "missing") is None
    delete(store, group, "a", 30, hard=False)
    assert store.expires_at(group, "a") is None  # deleted
    assert store.expires_at("never_written", "a") is None


def test_drop_removes_only_that_group(store: OnlineStore, groups: Callable[[], str]) -> None:
    first, second = groups(), groups()
    write(store, first, [small("a", 1, 1), small("b", 1, 1)])
    write(store, second, [small("a", 1, 2)])
    delete(store, first, "c", 1, hard=False)
    store.drop(first)
    assert read(store, first, ["a", "b", "c"]) == [None, None, None]
    assert read(store, second, ["a"]) == [small("a", 1, 2)]
    assert write(store, first, [small("a", 0, 3)]) == 1  # a dropped group starts afresh
    store.drop("never_written")


def test_new_features_read_as_null_until_written(store: OnlineStore, group: str) -> None:
    write(store, group, [small("a", 1, 1)])
    wider = [*SMALL, FeatureDefinition("extra", FeatureType.STRING)]
    assert read(store, group, ["a"], wider) == [{**small("a", 1, 1), "extra": None}]
    assert write(store, group, [{**small("b", 1, 2), "extra": "x"}], wider) == 1
    assert read(store, group, ["a", "b"], wider, features=["extra"]) == [
        {ID: "a", ET: at(1), "extra": None}, {ID: "b", ET: at(1), "extra": "x"}]


def test_many_records_in_one_batch(store: OnlineStore, group: str) -> None:
    definitions = [*SMALL, FeatureDefinition("input_ids", FeatureType.LIST, "int32", 128)]
    rows = [{**small(f"id-{i}", i, i), "input_ids": [(i + k) % 30000 for k in range(128)]}
            for i in range(5000)]
    assert write(store, group, rows, definitions) == 5000
    order = list(range(5000))
    random.Random(3).shuffle(order)
    got = read(store, group, [f"id-{i}" for i in order], definitions)
    assert got == [rows[i] for i in order]


def test_concurrent_writers_keep_the_latest_event(store: OnlineStore, group: str) -> None:
    ids = [f"k{i}" for i in range(40)]
    latest: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(25):
                chosen = rng.sample(ids, 15)
                stamps = [rng.randrange(1_000_000) for _ in chosen]
                # rating mirrors the event time, so a torn record would show.
                write(store, group, [small(i, s / 1000, s) for i, s in zip(chosen, stamps,
                                                                            strict=True)])
                with lock:
                    for i, s in zip(chosen, stamps, strict=True):
                        latest[i] = max(latest.get(i, -1), s)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    got = read(store, group, list(latest))
    assert {r[ID]: r["rating"] for r in got} == latest
    assert all(r[ET] == at(r["rating"] / 1000) for r in got)


def test_open_online_store_by_url(tmp_path: Path) -> None:
    default = open_online_store(None, tmp_path)
    assert isinstance(default, SQLiteOnlineStore)
    assert default.path == str(tmp_path / "online.sqlite")
    default.close()
    named = open_online_store(f"sqlite:///{tmp_path / 'sub' / 'x.db'}?synchronous=off",
                              tmp_path)
    assert isinstance(named, SQLiteOnlineStore) and (tmp_path / "sub").is_dir()
    assert named.path == str(tmp_path / "sub" / "x.db")
    named.close()
    with pytest.raises(ConfigurationError, match="synchronous"):
        open_online_store(f"sqlite:///{tmp_path / 'y.db'}?synchronous=sometimes", tmp_path)
    if pytest.importorskip("redis"):
        remote = open_online_store("redis://127.0.0.1:6379/15", tmp_path)
        assert isinstance(remote, RedisOnlineStore)
        remote.close()
    with pytest.raises(ConfigurationError, match="redis://") as info:
        open_online_store("mongodb://user:secret@host/db", tmp_path)
    assert "secret" not in str(info.value)


def test_sqlite_stores_sharing_a_file_stay_consistent(tmp_path: Path) -> None:
    """Two connections (as two processes would have) race on one file; the newest wins."""
    stores = [SQLiteOnlineStore(tmp_path / "shared.sqlite") for _ in range(2)]
    group = "shared"

    def writer(index: int) -> None:
        for step in range(40):
            seconds = step * 2 + index  # interleaved event times: store 1 always newest
            write(stores[index], group, [small(f"k{i}", seconds, seconds) for i in range(20)])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        assert read(store, group, ["k0", "k19"]) == [small("k0", 79, 79), small("k19", 79, 79)]
        store.close()


def test_sqlite_reader_sees_another_connections_new_feature_and_drop(tmp_path: Path) -> None:
    """The reader caches its statements; a feature added or a group dropped through another
    connection (another process) still shows up in its next reads, single and batch."""
    reader, writer = (SQLiteOnlineStore(tmp_path / "shared.sqlite") for _ in range(2))
    try:
        write(writer, "g", [small("a", 1, 1), small("b", 1, 2)])
        assert read(reader, "g", ["a"]) == [small("a", 1, 1)]
        assert read(reader, "g", ["a", "b"]) == [small("a", 1, 1), small("b", 1, 2)]
        wider = [*SMALL, FeatureDefinition("extra", FeatureType.STRING)]
        assert read(reader, "g", ["a"], wider) == [{**small("a", 1, 1), "extra": None}]
        write(writer, "g", [{**small("a", 2, 3), "extra": "x"}], wider)
        assert read(reader, "g", ["a"], wider) == [{**small("a", 2, 3), "extra": "x"}]
        assert read(reader, "g", ["a", "b"], wider, features=["extra"]) == [
            {ID: "a", ET: at(2), "extra": "x"}, {ID: "b", ET: at(1), "extra": None}]
        assert read(reader, "g", ["a"]) == [small("a", 2, 3)]  # the narrower plan still works
        writer.drop("g")
        assert read(reader, "g", ["a"], wider) == [None]
        assert read(reader, "g", ["a", "b"]) == [None, None]
    finally:
        reader.close()
        writer.close()
