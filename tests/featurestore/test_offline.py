"""The Delta Lake offline store, on real files: types, partitions, time travel, concurrency."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from loopworks.errors import ConfigurationError, ConflictError, NotFoundError, ValidationError
from loopworks.featurestore.definitions import EVENT_TIME_TYPE
from loopworks.featurestore.offline import DeltaOfflineStore

T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
SCHEMA = pa.schema([
    ("review_id", pa.string()),
    ("date", EVENT_TIME_TYPE),
    ("sentiment", pa.int64()),
    ("score", pa.float64()),
    ("verified", pa.bool_()),
    ("input_ids", pa.list_(pa.int32(), 128)),
    ("embedding", pa.list_(pa.float32(), 8)),
    ("tags", pa.list_(pa.int64())),
    ("split_type", pa.string()),
    ("write_time", EVENT_TIME_TYPE),
    ("is_deleted", pa.bool_()),
])


def make_batch(ids: list[str], *, write_time: datetime = T0,
               dates: list[datetime] | None = None) -> pa.Table:
    """Review-like rows of every feature type; row 1 (when present) is null everywhere."""
    n = len(ids)
    rows = {
        "review_id": ids,
        "date": dates or [T0 + timedelta(hours=i) for i in range(n)],
        "sentiment": [i % 3 - 1 for i in range(n)],
        "score": [i / 7 for i in range(n)],
        "verified": [i % 2 == 0 for i in range(n)],
        "input_ids": [[i] + [0] * 127 for i in range(n)],
        "embedding": [[i * 0.5] * 8 for i in range(n)],
        "tags": [list(range(i % 4)) for i in range(n)],
        "split_type": ["train" if i % 5 else "test" for i in range(n)],
        "write_time": [write_time] * n,
        "is_deleted": [False] * n,
    }
    if n > 1:
        for name in ("sentiment", "score", "verified", "input_ids", "embedding", "tags",
                     "split_type"):
            rows[name][1] = None
    return pa.table(rows, schema=SCHEMA)


@pytest.fixture
def store(tmp_path: Path) -> DeltaOfflineStore:
    return DeltaOfflineStore(str(tmp_path / "offline"), lock_dir=tmp_path / "locks")


def sorted_rows(table: pa.Table) -> pa.Table:
    return table.sort_by([("review_id", "ascending"), ("write_time", "ascending")])


def data_files(store: DeltaOfflineStore, group: str) -> list[str]:
    from deltalake import DeltaTable

    return DeltaTable(store.uri(group)).file_uris()


# ------------------------------------------------------------------------ types
def test_append_and_read_back_every_type(store: DeltaOfflineStore) -> None:
    batch = make_batch([f"r{i}" for i in range(10)])
    assert store.append("reviews", batch, event_time="date") == 0

    back = store.read("reviews")
    assert back.schema.remove_metadata() == SCHEMA.append(pa.field("event_date", pa.date32()))
    assert sorted_rows(back.drop_columns(["event_date"])).equals(batch)
    assert back.column("input_ids").type == pa.list_(pa.int32(), 128)
    assert back.column("embedding").type == pa.list_(pa.float32(), 8)
    assert back.column("tags").type == pa.list_(pa.int64())
    assert store.read("reviews", columns=["input_ids"]).column(0).type \
        == pa.list_(pa.int32(), 128)
    # Values are native typed Parquet lists on disk, never strings.
    schema = pq.read_schema(data_files(store, "reviews")[0])
    assert pa.types.is_fixed_size_list(schema.field("input_ids").type)
    assert schema.field("tags").type.value_type == pa.int64()


def test_append_versions_and_parquet_settings(store: DeltaOfflineStore) -> None:
    assert store.append_versions("reviews", make_batch(["a"]), event_time="date") == (None, 0)
    assert store.append_versions("reviews", make_batch(["b"]), event_time="date") == (0, 1)
    metadata = pq.ParquetFile(data_files(store, "reviews")[0]).metadata
    columns = [metadata.row_group(0).column(i) for i in range(metadata.num_columns)]
    assert {c.compression for c in columns} <= {"LZ4", "LZ4_RAW"}  # Arrow says LZ4
    assert not any(c.has_dictionary_page for c in columns)
    assert sorted(store.read("reviews").column("review_id").to_pylist()) == ["a", "b"]


def test_local_tables_read_straight_from_disk_in_any_folder(tmp_path: Path) -> None:
    """Local tables are scanned from their files (URL-decoded paths, event_date from the
    folder); time travel and as_of still apply."""
    store = DeltaOfflineStore(str(tmp_path / "my offline é"), lock_dir=tmp_path / "locks")
    first = make_batch(["a", "b"], write_time=T0, dates=[T0, T0 + timedelta(days=1)])
    store.append("reviews", first, event_time="date")
    store.append("reviews", make_batch(["c"], write_time=T0 + timedelta(hours=1)),
                 event_time="date")
    dataset = store.dataset("reviews")
    assert isinstance(dataset, pads.FileSystemDataset)
    assert all(" " in path and "%" not in path for path in dataset.files)
    assert sorted(dataset.to_table().column("review_id").to_pylist()) == ["a", "b", "c"]
    assert sorted_rows(store.read("reviews", version=0).drop_columns(["event_date"])).equals(
        sorted_rows(first))
    assert store.read("reviews", as_of=T0).num_rows == 2
    dates = store.read("reviews", columns=["review_id", "event_date"]).to_pylist()
    assert {r["review_id"]: r["event_date"].isoformat() for r in dates} == {
        "a": "2024-01-02", "b": "2024-01-03", "c": "2024-01-02"}


def test_filter_and_column_projection(store: DeltaOfflineStore) -> None:
    store.append("reviews", make_batch([f"r{i}" for i in range(10)]), event_time="date")
    got = store.read("reviews", columns=["review_id", "input_ids"],
                     filter=pc.field("sentiment") == 1)
    assert got.column_names == ["review_id", "input_ids"]
    assert sorted(got.column("review_id").to_pylist()) == ["r2", "r5", "r8"]


def test_partitions_by_utc_event_date(store: DeltaOfflineStore, tmp_path: Path) -> None:
    dates = [datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC),
             datetime(2024, 3, 2, 0, 0, 0, tzinfo=UTC),
             datetime(2024, 3, 4, 12, tzinfo=UTC)]
    store.append("reviews", make_batch(["a", "b", "c"], dates=dates), event_time="date")
    folders = sorted(p.name for p in (tmp_path / "offline" / "reviews").iterdir()
                     if p.name.startswith("event_date="))
    assert folders == ["event_date=2024-03-01", "event_date=2024-03-02",
                       "event_date=2024-03-04"]
    got = sorted_rows(store.read("reviews"))
    assert [d.isoformat() for d in got.column("event_date").to_pylist()] == \
        ["2024-03-01", "2024-03-02", "2024-03-04"]


def test_file_url_root_is_a_local_folder(tmp_path: Path) -> None:
    store = DeltaOfflineStore(f"file://{tmp_path}/offline", lock_dir=tmp_path / "locks")
    store.append("reviews", make_batch(["a"]), event_time="date")
    assert (tmp_path / "offline" / "reviews" / "_delta_log").is_dir()


# ----------------------------------------------------------------- validation
def test_append_checks_columns_and_types(store: DeltaOfflineStore) -> None:
    batch = make_batch(["a", "b"])
    with pytest.raises(ValidationError, match="needs column 'is_deleted'"):
        store.append("reviews", batch.drop_columns(["is_deleted"]), event_time="date")
    with pytest.raises(ValidationError, match="'write_time' must be timestamp"):
        store.append("reviews", batch.set_column(9, "write_time", pa.array(["x", "y"])),
                     event_time="date")
    with pytest.raises(ConfigurationError, match="cannot name an offline table"):
        store.append("../escape", batch, event_time="date")
    store.append("reviews", batch, event_time="date")
    short = batch.set_column(5, pa.field("input_ids", pa.list_(pa.int32(), 64)),
                             pa.array([[1] * 64, None], pa.list_(pa.int32(), 64)))
    with pytest.raises(ValidationError, match="'input_ids' is fixed_size_list") as info:
        store.append("reviews", short, event_time="date")
    assert info.value.feature == "input_ids"
    assert store.version("reviews") == 0


def test_new_feature_evolves_the_schema(store: DeltaOfflineStore) -> None:
    store.append("reviews", make_batch(["a"]), event_time="date")
    wider = make_batch(["b"]).append_column(
        pa.field("vec", pa.list_(pa.float32(), 4)), pa.array([[1, 2, 3, 4]], pa.list_(
            pa.float32(), 4)))
    assert store.append("reviews", wider, event_time="date") == 1
    got = sorted_rows(store.read("reviews"))
    assert got.schema.field("vec").type == pa.list_(pa.float32(), 4)
    assert got.column("vec").to_pylist() == [None, [1.0, 2.0, 3.0, 4.0]]
    assert store.read("reviews", version=0).schema.names == SCHEMA.names + ["event_date"]


# --------------------------------------------------------------- time travel
def test_versions_increase_and_time_travel(store: DeltaOfflineStore) -> None:
    assert store.version("reviews") is None
    assert not store.exists("reviews")
    versions = [store.append("reviews", make_batch([f"v{v}-{i}" for i in range(3)]),
                             event_time="date") for v in range(3)]
    assert versions == [0, 1, 2]
    assert store.exists("reviews") and store.version("reviews") == 2
    assert store.read("reviews").num_rows == 9
    old = store.read("reviews", version=0)
    assert sorted(old.column("review_id").to_pylist()) == ["v0-0", "v0-1", "v0-2"]
    assert store.dataset("reviews", version=1).count_rows() == 6

    with pytest.raises(NotFoundError, match=r"0\.\.2") as info:
        store.read("reviews", version=5)
    assert info.value.valid_range == [0, 2]
    with pytest.raises(NotFoundError, match="'nothing'"):
        store.dataset("nothing")


def test_as_of_is_exact_within_one_second(store: DeltaOfflineStore) -> None:
    first, second = T0, T0 + timedelta(microseconds=1)
    store.append("reviews", make_batch(["a", "b"], write_time=first), event_time="date")
    store.append("reviews", make_batch(["a", "c"], write_time=second), event_time="date")

    assert store.read("reviews", as_of=first).num_rows == 2
    assert store.read("reviews", as_of=second).num_rows == 4
    assert store.read("reviews", as_of=first - timedelta(microseconds=1)).num_rows == 0
    naive = store.read("reviews", as_of=second.replace(tzinfo=None))
    assert naive.num_rows == 4
    assert store.read("reviews", version=0, as_of=second).num_rows == 2
    ds = store.dataset("reviews", as_of=first)  # noqa: F841 (DuckDB finds it by name)
    assert duckdb.sql("select count(*) from ds").fetchall() == [(2,)]


def test_history_lists_commits_newest_first(store: DeltaOfflineStore) -> None:
    store.append("reviews", make_batch(["a", "b"]), event_time="date")
    store.append("reviews", make_batch(["c", "d", "e"]), event_time="date")
    store.optimize("reviews")
    history = store.history("reviews")
    assert [h["version"] for h in history] == [2, 1, 0]
    assert [h["operation"] for h in history] == ["OPTIMIZE", "WRITE", "WRITE"]
    assert [h["rows_added"] for h in history[1:]] == [3, 2]
    assert all(isinstance(h["timestamp"], datetime) for h in history)


def test_restore_rolls_back_an_append(store: DeltaOfflineStore) -> None:
    store.append("reviews", make_batch(["a"]), event_time="date")
    version = store.append("reviews", make_batch(["b"]), event_time="date")
    with pytest.raises(ConflictError):
        store.restore("reviews", 0, expected_version=version + 1)
    assert store.restore("reviews", 0, expected_version=version) == 2
    assert store.read("reviews").column("review_id").to_pylist() == ["a"]
    assert store.read("reviews", version=1).num_rows == 2


# ------------------------------------------------------------- maintenance
def test_optimize_compacts_and_keeps_rows_and_types(store: DeltaOfflineStore) -> None:
    one_day = [T0] * 5
    for i in range(6):
        store.append("reviews", make_batch([f"b{i}-{j}" for j in range(5)], dates=one_day),
                     event_time="date")
    before = sorted_rows(store.read("reviews"))
    assert len(data_files(store, "reviews")) == 6

    metrics = store.optimize("reviews")
    assert metrics["numFilesRemoved"] == 6 and metrics["numFilesAdded"] == 1
    assert len(data_files(store, "reviews")) == 1
    after = sorted_rows(store.read("reviews"))
    assert after.equals(before)
    assert after.schema.field("input_ids").type == pa.list_(pa.int32(), 128)
    assert store.read("reviews", version=2).num_rows == 15  # old files kept: time travel


def test_delete_removes_the_table(store: DeltaOfflineStore, tmp_path: Path) -> None:
    store.append("reviews", make_batch(["a"]), event_time="date")
    store.append("other", make_batch(["a"]), event_time="date")
    store.delete("reviews")
    assert not (tmp_path / "offline" / "reviews").exists()
    assert not store.exists("reviews") and store.version("reviews") is None
    assert store.exists("other")
    store.delete("reviews")  # nothing there: no-op


# ------------------------------------------------------------- concurrency
def test_eight_threads_append_without_losing_commits(tmp_path: Path) -> None:
    per_thread, batches = 5, 6
    versions: list[int] = []
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        # A store per thread: the lock is per table across the process, not per object.
        store = DeltaOfflineStore(str(tmp_path / "offline"), lock_dir=tmp_path / "locks")
        try:
            for b in range(batches):
                ids = [f"t{thread}-{b}-{i}" for i in range(per_thread)]
                versions.append(store.append("reviews", make_batch(ids), event_time="date"))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    store = DeltaOfflineStore(str(tmp_path / "offline"), lock_dir=tmp_path / "locks")
    ids = store.read("reviews", columns=["review_id"]).column(0).to_pylist()
    assert len(ids) == len(set(ids)) == 8 * batches * per_thread
    assert sorted(versions) == list(range(8 * batches))
    assert store.version("reviews") == 8 * batches - 1


def _process_worker(root: str, lock_dir: str, worker: int, batches: int) -> list[int]:
    store = DeltaOfflineStore(root, lock_dir=Path(lock_dir))
    return [store.append("reviews", make_batch([f"p{worker}-{b}-{i}" for i in range(4)]),
                         event_time="date") for b in range(batches)]


def test_three_processes_append_without_losing_commits(tmp_path: Path) -> None:
    root, locks, batches = str(tmp_path / "offline"), str(tmp_path / "locks"), 8
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(_process_worker, [(root, locks, w, batches) for w in range(3)])
    versions = sorted(v for result in results for v in result)
    assert versions == list(range(3 * batches))
    ids = DeltaOfflineStore(root, lock_dir=Path(locks)).read("reviews").column(
        "review_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3 * batches * 4


# ------------------------------------------------------------------ DuckDB
def test_duckdb_queries_the_dataset_with_list_columns(store: DeltaOfflineStore) -> None:
    store.append("reviews", make_batch([f"r{i}" for i in range(10)]), event_time="date")
    store.append("reviews", make_batch([f"s{i}" for i in range(10)]), event_time="date")
    con = duckdb.connect()
    con.register("reviews", store.dataset("reviews"))
    types = dict(con.sql("select column_name, column_type from (describe reviews)").fetchall())
    assert types["input_ids"] == "INTEGER[128]"
    assert types["embedding"] == "FLOAT[8]"
    assert types["tags"] == "BIGINT[]"
    assert types["date"] == "TIMESTAMP WITH TIME ZONE"
    rows = con.sql("""
        select split_type, sentiment, count(*) as n, min(len(input_ids)) as ids_len,
               sum(input_ids[1]) as first_ids, max(len(tags)) as max_tags
        from reviews where input_ids is not null
        group by all order by all
    """).fetchall()
    assert sum(r[2] for r in rows) == 18
    assert {r[3] for r in rows} == {128}
    assert max(r[5] for r in rows) == 3
    ds = store.dataset("reviews", version=0)  # noqa: F841 (DuckDB replacement scan)
    assert duckdb.sql("select count(*), sum(array_length(input_ids)) from ds").fetchall() \
        == [(10, 9 * 128)]
