"""Ratings become sentiment and label ids; unusable rows get a reason, never vanish."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from loopworks.processing import ColumnNames, sentiment_from_rating
from loopworks.processing.semantics import normalize_batch


def test_sentiment_mapping() -> None:
    assert sentiment_from_rating(pa.array([1, 2, 3, 4, 5])).tolist() == [-1, -1, 0, 1, 1]


def _normalize(ratings: list, texts: list, **kw) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_pydict({"review_body": texts, "star_rating": ratings})
    return normalize_batch(batch, columns=ColumnNames(), source="f.csv", first_row=1,
                           event_time=datetime(2024, 1, 1, tzinfo=UTC), **kw)


def test_string_ratings_are_parsed_and_bad_ones_get_reasons() -> None:
    ratings = ["5", " 4.0 ", "3", "five", "", None, "0", "6", "2.5", "1"]
    texts = ["ok"] * 9 + ["   "]
    out = _normalize(ratings, texts)
    assert out.column("reason").to_pylist() == [
        None, None, None, "bad_rating", "missing_rating", "missing_rating",
        "rating_out_of_range", "rating_out_of_range", "bad_rating", "empty_text"]
    assert out.column("sentiment").to_pylist()[:3] == [1, 1, 0]
    assert out.column("label_id").to_pylist()[:3] == [2, 2, 1]
    assert out.column("review_id").to_pylist()[:2] == ["f.csv:1", "f.csv:2"]


def test_numeric_ratings() -> None:
    out = _normalize([1, 2.0, 3.5, None, 7], ["a", "b", "c", "d", "e"])
    assert out.column("reason").to_pylist() == [None, None, "bad_rating", "missing_rating",
                                                 "rating_out_of_range"]
    assert out.column("label_id").to_pylist()[:2] == [0, 0]


def test_lab_compat_rejects_any_missing_value() -> None:
    batch = pa.RecordBatch.from_pydict({"review_body": ["a", "b"], "star_rating": ["5", "4"],
                                        "title": [None, "t"]})
    out = normalize_batch(batch, columns=ColumnNames(), source="f.csv", first_row=1,
                          event_time=datetime(2024, 1, 1, tzinfo=UTC), lab_compat=True)
    assert out.column("reason").to_pylist() == ["missing_value", None]
