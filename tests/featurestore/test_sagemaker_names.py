"""SageMaker's names and types in the SDK: hyphenated group names (as every SageMaker
example makes them), and event times declared as ISO 8601 text (String) or epoch seconds
(Fractional), kept as timestamps so time travel and point-in-time joins still work."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from loopworks import FeatureStore
from loopworks.errors import ConfigurationError, NotFoundError


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(home=tmp_path / "home")


def test_a_hyphenated_group_works_everywhere(store: FeatureStore) -> None:
    name = "reviews-feature-group-1629336103"
    frame = pd.DataFrame({"review_id": ["r1", "r2"], "sentiment": [1, -1],
                          "event_time": ["2024-05-01T12:00:00Z", "2024-05-02T08:30:00Z"]})
    group = store.create_feature_group(name, record_id="review_id", event_time="event_time",
                                       df=frame)
    assert group.spec.transformation["event_time_type"] == "String"
    group.ingest(frame)
    assert store.feature_group(name).get_record("r2")["sentiment"] == -1
    counted = store.query(f'SELECT count(*) AS n FROM "{name}_latest"')
    assert int(counted["n"][0]) == 2
    history = store.query(f'SELECT review_id FROM "{name}" ORDER BY event_time')
    assert list(history["review_id"]) == ["r1", "r2"]
    examples = pd.DataFrame({"review_id": ["r1"], "event_time": [
        datetime(2024, 6, 1, tzinfo=UTC)]})
    built = store.training_set(examples, [f"{name}:sentiment"])
    assert list(built["sentiment"]) == [1]
    store.delete_feature_group(name)


def test_epoch_seconds_event_times(store: FeatureStore) -> None:
    frame = pd.DataFrame({"review_id": ["r1", "r2"], "sentiment": [0, 1],
                          "event_time": [1714564800.25, 1714608000.0]})
    group = store.create_feature_group("epoch-times", record_id="review_id",
                                       event_time="event_time", df=frame)
    assert group.spec.transformation["event_time_type"] == "Fractional"
    group.ingest(frame)
    stored = group.get_record("r1")["event_time"]
    assert stored == datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    # The newer event wins online whatever the arrival order, as with timestamps.
    group.ingest(pd.DataFrame({"review_id": ["r1"], "sentiment": [2],
                               "event_time": [1714564700.0]}))
    assert group.get_record("r1")["sentiment"] == 0


@pytest.mark.parametrize("name", ["Reviews", "-reviews", "reviews-", "a b", "x" * 64, ""])
def test_names_sagemaker_would_refuse_or_sql_would_confuse(store: FeatureStore,
                                                          name: str) -> None:
    frame = pd.DataFrame({"review_id": ["r1"], "event_time": ["2024-05-01T12:00:00Z"]})
    with pytest.raises(ConfigurationError, match="invalid feature group name"):
        store.create_feature_group(name, record_id="review_id", event_time="event_time",
                                   df=frame)


def test_an_event_time_that_is_no_time_is_refused_by_row(store: FeatureStore) -> None:
    frame = pd.DataFrame({"review_id": ["r1", "r2"], "event_time": [1714564800.0,
                                                                    float("inf")]})
    group = store.create_feature_group("bad-times", record_id="review_id",
                                       event_time="event_time", df=frame.iloc[:1])
    with pytest.raises(Exception, match="event_time"):
        group.ingest(frame)
    assert group.get_record("r1") is None  # nothing of the batch was written


def _history(store: FeatureStore) -> None:
    frame = pd.DataFrame({
        "review_id": ["r1", "r1", "r1", "r2", "r3"],
        "EventTime": [1714564800.0, 1714651200.0, 1714737600.0, 1714564800.0, 1714564800.0],
        "sentiment": [1, 0, -1, 1, 0]})
    group = store.create_feature_group("reviews-fg", record_id="review_id",
                                       event_time="EventTime", df=frame)
    group.ingest(frame)
    # A second write of r2 at the same event time (a duplicate), and r3 deleted.
    group.ingest(pd.DataFrame({"review_id": ["r2"], "EventTime": [1714564800.0],
                               "sentiment": [-1]}))
    group.delete_record("r3", datetime(2024, 5, 2, tzinfo=UTC))


def test_a_dataset_without_an_entity_table(store: FeatureStore) -> None:
    _history(store)
    every = store.dataset("reviews-fg")
    assert list(zip(every["review_id"], every["sentiment"], strict=True)) == [
        ("r1", 1), ("r1", 0), ("r1", -1), ("r2", -1)]  # r2's last write; r3 deleted
    latest = store.dataset("reviews-fg", recent=1, features=["sentiment"])
    assert list(latest.columns) == ["review_id", "EventTime", "sentiment"]
    assert list(zip(latest["review_id"], latest["sentiment"], strict=True)) == [
        ("r1", -1), ("r2", -1)]
    ranged = store.dataset("reviews-fg", start="2024-05-02T00:00:00Z",
                           end="2024-05-02T23:59:59Z")
    assert list(ranged["sentiment"]) == [0]
    duplicates = store.dataset("reviews-fg", include_duplicates=True)
    assert sorted(duplicates[duplicates.review_id == "r2"]["sentiment"]) == [-1, 1]
    with_deleted = store.dataset("reviews-fg", include_deleted=True)
    assert set(with_deleted.review_id) == {"r1", "r2", "r3"}
    assert with_deleted.is_deleted.any()
    with pytest.raises(ConfigurationError, match="recent"):
        store.dataset("reviews-fg", recent=0)
    with pytest.raises(NotFoundError, match="colour"):
        store.dataset("reviews-fg", features=["colour"])


def test_training_set_takes_the_groups_event_time_column(store: FeatureStore) -> None:
    _history(store)
    examples = pd.DataFrame({"review_id": ["r1"], "EventTime": [
        datetime(2024, 5, 2, 12, tzinfo=UTC)]})
    built = store.training_set(examples, ["reviews-fg:sentiment"])
    assert list(built["sentiment"]) == [0]


def test_concurrent_single_record_writes_share_commits_and_lose_nothing(
        store: FeatureStore) -> None:
    """Eight writers, 40 records each, one put_record at a time: every record is in both
    stores when its call returns, and the writes were batched (fewer Delta versions than
    records)."""
    import threading

    frame = pd.DataFrame({"review_id": ["seed"], "EventTime": [1714564800.0],
                          "sentiment": [0]})
    group = store.create_feature_group("concurrent-puts", record_id="review_id",
                                       event_time="EventTime", df=frame)
    errors: list[BaseException] = []
    acknowledged: list[str] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        try:
            for i in range(40):
                rid = f"w{w}-{i}"
                assert group.put_record({"review_id": rid, "EventTime": 1714564800.0 + i,
                                         "sentiment": i % 3 - 1})
                assert group.get_record(rid) is not None  # online when acknowledged
                with lock:
                    acknowledged.append(rid)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(acknowledged) == 320
    offline = store.query('SELECT count(*) AS n FROM "concurrent-puts"')
    assert int(offline["n"][0]) == 320
    assert store.offline.version("concurrent-puts") + 1 < 320  # commits were shared
    # An older event for a stored id is refused as before (False), a newer one accepted.
    assert group.put_record({"review_id": "w0-5", "EventTime": 1.0, "sentiment": 1}) is False
    assert group.put_record({"review_id": "w0-5", "EventTime": 1814564800.0,
                             "sentiment": 1}) is True
