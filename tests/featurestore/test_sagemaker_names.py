"""SageMaker's names and types in the SDK: hyphenated group names (as every SageMaker
example makes them), and event times declared as ISO 8601 text (String) or epoch seconds
(Fractional), kept as timestamps so time travel and point-in-time joins still work."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from loopworks import FeatureStore
from loopworks.errors import ConfigurationError


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
