"""The SQL console's engine: read-only, one statement, bounded rows, time, memory and
temporary files, no file access."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_store import reviews

from loopworks.errors import ValidationError
from loopworks.featurestore import FeatureStore
from loopworks.featurestore.console import QueryHistory, readonly_query


@pytest.fixture
def store(tmp_path: Path):
    with FeatureStore(home=tmp_path / "home") as fs:
        group = fs.create_feature_group("reviews", record_id="review_id", event_time="date",
                                        df=reviews(1))
        group.ingest(reviews(250))
        yield fs


def test_pages_of_a_select(store: FeatureStore) -> None:
    sql = "SELECT review_id, sentiment FROM reviews_latest ORDER BY review_id"
    first = readonly_query(store, sql, limit=100)
    assert first.table.num_rows == 100 and first.more
    last = readonly_query(store, sql + ";", limit=100, offset=200)
    assert last.table.num_rows == 50 and not last.more
    counts = readonly_query(store, "WITH s AS (SELECT sentiment FROM reviews) "
                                   "SELECT sentiment, count(*) n FROM s GROUP BY 1")
    assert sum(counts.table.column("n").to_pylist()) == 250


@pytest.mark.parametrize(("sql", "message"), [
    ("DROP TABLE reviews", "DROP statements are refused"),
    ("CREATE TABLE x AS SELECT 1", "CREATE statements are refused"),
    ("INSERT INTO reviews SELECT * FROM reviews", "INSERT statements are refused"),
    ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY statements are refused"),
    ("ATTACH '/tmp/other.db'", "ATTACH statements are refused"),
    ("SELECT 1; SELECT 2", "one statement at a time"),
    ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
    ("SELECT * FROM no_such_group", "SQL error"),
    # EXPLAIN ANALYZE runs the statement it explains: refused like the statement itself.
    ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "CREATE statements are refused"),
    ("EXPLAIN ANALYZE INSERT INTO reviews SELECT * FROM reviews",
     "INSERT statements are refused"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'", "COPY statements are refused"),
    ("explain /* why */ analyze\n-- not this\nDROP TABLE reviews", "DROP statements are refused"),
    ("EXPLAIN (ANALYZE) CREATE TABLE t AS SELECT 1", "CREATE statements are refused"),
    ("EXPLAIN (FORMAT json) DELETE FROM reviews", "DELETE statements are refused"),
    ("EXPLAIN ANALYZE SET threads = 64", "SET statements are refused"),
])
def test_anything_but_reading_the_groups_is_refused(store: FeatureStore, sql: str,
                                                    message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        readonly_query(store, sql)
    assert readonly_query(store, "SELECT count(*) AS n FROM reviews").table.column(
        "n").to_pylist() == [250]  # nothing changed


@pytest.mark.parametrize("sql", [
    "EXPLAIN SELECT sentiment, count(*) FROM reviews GROUP BY 1",
    "EXPLAIN ANALYZE SELECT sentiment, count(*) FROM reviews GROUP BY 1",
    "/* plan */ EXPLAIN (FORMAT json) SELECT * FROM reviews_latest",
])
def test_explain_of_a_select_shows_the_plan(store: FeatureStore, sql: str) -> None:
    plan = readonly_query(store, sql)
    assert plan.table.column_names == ["explain_key", "explain_value"]
    assert "scan" in plan.table.column("explain_value")[0].as_py().lower()


def test_a_query_past_the_memory_limit_is_stopped(store: FeatureStore) -> None:
    import psutil

    hungry = "SELECT length(string_agg(repeat('x', 100), ',')) FROM range(20000000)"  # ~2 GB
    me = psutil.Process()
    before = peak = me.memory_info().rss
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, me.memory_info().rss)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(ValidationError, match=r"the query needed more memory than the "
                                                  r"console allows \(512 MB\)"):
            readonly_query(store, hungry)
    finally:
        done.set()
        watcher.join()
    assert peak - before < 800e6, f"the process grew by {(peak - before) / 1e6:.0f} MB"
    small = readonly_query(store, "SELECT count(*) AS n FROM reviews_latest")
    assert small.table.column("n").to_pylist() == [250]  # the same store still answers
    assert not any((store.home / "tmp").iterdir())  # temporary files went with the query


def test_spilling_past_the_temporary_file_limit_is_stopped(store: FeatureStore) -> None:
    distinct = ("SELECT count(*) AS n FROM (SELECT DISTINCT range::VARCHAR || "
                "'-some-padding-to-spill' FROM range({rows}))")
    with pytest.raises(ValidationError, match=r"more memory than the console allows "
                                              r"\(50 MB in memory and 20 MB of temporary"):
        readonly_query(store, distinct.format(rows=5_000_000), memory_limit_mb=50,
                       temp_limit_mb=20)
    fits = readonly_query(store, distinct.format(rows=200_000), memory_limit_mb=50,
                          temp_limit_mb=20)
    assert fits.table.column("n").to_pylist() == [200_000]


def test_time_limit_interrupts(store: FeatureStore) -> None:
    slow = "SELECT count(*) FROM range(100000000000) a"
    with pytest.raises(ValidationError, match="time limit of 0.3 s"):
        readonly_query(store, slow, time_limit=0.3)


def test_history_keeps_the_last_queries_per_person(store: FeatureStore) -> None:
    history = QueryHistory(store.registry.engine, keep=3)
    for i in range(5):
        history.add(1, f"SELECT {i}", ok=True)
    history.add(1, "SELECT 2", ok=True)  # again: moves to the top
    history.add(2, "SELECT 'other person'", ok=False)
    assert [q["sql"] for q in history.recent(1)] == ["SELECT 2", "SELECT 4", "SELECT 3"]
    assert [q["sql"] for q in history.recent(2)] == ["SELECT 'other person'"]
