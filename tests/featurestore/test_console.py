"""The SQL console's engine: read-only, one statement, bounded rows and time, no file access."""

from __future__ import annotations

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
])
def test_anything_but_reading_the_groups_is_refused(store: FeatureStore, sql: str,
                                                    message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        readonly_query(store, sql)
    assert readonly_query(store, "SELECT count(*) AS n FROM reviews").table.column(
        "n").to_pylist() == [250]  # nothing changed


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
