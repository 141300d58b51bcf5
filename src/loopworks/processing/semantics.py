"""Review semantics: ratings to sentiment and label ids, and why a row cannot be used.

All of it is vectorised over Arrow arrays. A row that cannot be used keeps a reason
(never silently dropped): the job counts reasons and writes those rows to a rejects file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.errors import InputError

__all__ = [
    "REJECT_REASONS",
    "ColumnNames",
    "normalize_batch",
    "sentiment_from_rating",
    "STAGING_SCHEMA_FIELDS",
]

#: Every reason a row can be rejected for, in the order they are checked.
REJECT_REASONS = (
    "missing_value",  # --lab-compat only: any column empty, as the lab's dropna()
    "empty_text",
    "missing_rating",
    "bad_rating",  # not a whole number
    "rating_out_of_range",  # outside 1..5
    "duplicate_id",
)

EVENT_TIME_TYPE = pa.timestamp("us", tz="UTC")
STAGING_SCHEMA_FIELDS = [
    pa.field("_row", pa.int64()),
    pa.field("review_id", pa.string()),
    pa.field("star_rating", pa.int8()),
    pa.field("rating_raw", pa.string()),
    pa.field("sentiment", pa.int8()),
    pa.field("label_id", pa.int8()),
    pa.field("review_body", pa.string()),
    pa.field("date", EVENT_TIME_TYPE),
    pa.field("reason", pa.string()),
]


@dataclass(frozen=True)
class ColumnNames:
    """Which input columns hold what. ``id``/``date`` may be absent from the input."""

    text: str = "review_body"
    rating: str = "star_rating"
    id: str = "review_id"
    date: str = "review_date"
    passthrough: tuple[str, ...] = ()


def sentiment_from_rating(rating: pa.Array | np.ndarray) -> np.ndarray:
    """Map star ratings 1–5 to sentiment: 1–2 → -1, 3 → 0, 4–5 → 1 (int8)."""
    r = np.asarray(rating)
    return (np.sign(r.astype(np.int16) - 3)).astype(np.int8)


def _parse_ratings(column: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Parse ratings of any type to int8 (null when unusable) and a reason code per row.

    Reason codes: 0 ok, 1 missing, 2 not a whole number, 3 out of range.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        values = arr.cast(pa.float64())
        missing = values.is_null().to_numpy(zero_copy_only=False)
        floats = values.fill_null(0).to_numpy(zero_copy_only=False)
        not_whole = ~missing & (~np.isfinite(floats) | (floats != np.round(floats)))
    else:
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        missing = pc.or_kleene(text.is_null(), pc.equal(text, "")).fill_null(True)
        missing = missing.to_numpy(zero_copy_only=False)
        whole = pc.match_substring_regex(text, r"^[+-]?\d{1,6}(\.0*)?$").fill_null(False)
        whole = whole.to_numpy(zero_copy_only=False)
        not_whole = ~missing & ~whole
        cleaned = pc.if_else(pa.array(whole), text, pa.scalar("0"))
        floats = pc.cast(cleaned, pa.float64()).to_numpy(zero_copy_only=False)
    floats = np.where(missing | not_whole, 0, floats)
    out_of_range = ~missing & ~not_whole & ((floats < 1) | (floats > 5))
    codes = np.zeros(n, dtype=np.int8)
    codes[out_of_range] = 3
    codes[not_whole] = 2
    codes[missing] = 1
    valid = codes == 0
    ratings = pa.array(floats.astype(np.int8), mask=~valid)
    return ratings, codes


def normalize_batch(
    batch: pa.RecordBatch,
    *,
    columns: ColumnNames,
    source: str,
    first_row: int,
    event_time: datetime,
    lab_compat: bool = False,
) -> pa.RecordBatch:
    """Turn a raw input batch into the staging layout with derived columns and reasons.

    Args:
        batch: Raw rows as read from the file.
        columns: Input column names.
        source: The file's name relative to the input root; generated ids are
            ``"<source>:<row>"`` so they stay unique across files.
        first_row: 1-based row number of the batch's first row within its file.
        event_time: The run's event time, used when there is no date column (and always
            with ``lab_compat``).
        lab_compat: Reject rows with a missing value in any column (the lab's ``dropna``).

    Returns:
        A record batch with the staging fields followed by the passthrough columns.

    Raises:
        InputError: A required column is missing or a date cannot be parsed.
    """
    names = batch.schema.names
    for role, name in (("text", columns.text), ("rating", columns.rating)):
        if name not in names:
            raise InputError(
                f"{source}: no {role} column {name!r}; columns are {', '.join(names)} "
                f"(choose with --{role}-column)",
                file=source, field=name,
            )
    for name in columns.passthrough:
        if name not in names:
            raise InputError(f"{source}: no passthrough column {name!r}", file=source, field=name)
    n = batch.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    if columns.id in names:
        ids = pc.utf8_trim_whitespace(batch.column(columns.id).cast(pa.string()))
        ids_missing = pc.or_kleene(ids.is_null(), pc.equal(ids, "")).fill_null(True)
        generated = pa.array([f"{source}:{r}" for r in rows]) if pc.any(ids_missing).as_py() \
            else None
        if generated is not None:
            ids = pc.if_else(ids_missing, generated, ids)
    else:
        ids = pc.binary_join_element_wise(pa.scalar(source + ":"), pa.array(rows.astype(str)), "")
    ratings, codes = _parse_ratings(batch.column(columns.rating))
    text = batch.column(columns.text).cast(pa.string())
    empty = pc.or_kleene(text.is_null(), pc.equal(pc.utf8_trim_whitespace(text), ""))
    empty = empty.fill_null(True).to_numpy(zero_copy_only=False)
    reason = np.full(n, None, dtype=object)
    for code, label in ((3, "rating_out_of_range"), (2, "bad_rating"), (1, "missing_rating")):
        reason[codes == code] = label
    reason[empty] = "empty_text"
    if lab_compat:
        any_missing = np.zeros(n, dtype=bool)
        for col in batch.columns:
            nulls = col.is_null()
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                nulls = pc.or_kleene(nulls, pc.equal(col, "")).fill_null(True)
            any_missing |= nulls.to_numpy(zero_copy_only=False)
        reason[any_missing] = "missing_value"
    sentiment = sentiment_from_rating(ratings.fill_null(3).to_numpy(zero_copy_only=False))
    valid = codes == 0
    sentiment_arr = pa.array(sentiment, mask=~valid)
    label_arr = pa.array((sentiment + 1).astype(np.int8), mask=~valid)
    dates = _event_times(batch, columns.date, n, event_time, source, lab_compat)
    raw_rating = batch.column(columns.rating).cast(pa.string())
    arrays = [pa.array(rows), ids, ratings, raw_rating, sentiment_arr, label_arr, text, dates,
              pa.array(reason, type=pa.string())]
    fields = list(STAGING_SCHEMA_FIELDS)
    for name in columns.passthrough:
        col = batch.column(name)
        arrays.append(col)
        fields.append(pa.field(name, col.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _event_times(batch: pa.RecordBatch, name: str, n: int, event_time: datetime, source: str,
                 lab_compat: bool) -> pa.Array:
    fallback = pa.array(np.full(n, np.datetime64(event_time.replace(tzinfo=None), "us")),
                        type=pa.timestamp("us")).cast(EVENT_TIME_TYPE)
    if lab_compat or name not in batch.schema.names:
        return fallback
    col = batch.column(name)
    try:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.cast(col, pa.timestamp("us")) if not _has_tz(col) else pc.cast(
                col, EVENT_TIME_TYPE)
        if pa.types.is_date(col.type):
            col = col.cast(pa.timestamp("us"))
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp(col.type.unit, tz=col.type.tz or "UTC"))
            col = col.cast(EVENT_TIME_TYPE)
        else:
            raise pa.ArrowInvalid(f"type {col.type}")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(
            f"{source}: date column {name!r} holds values that are not dates or timestamps "
            f"({str(exc).splitlines()[0]}); fix them or pass --date-column ''",
            file=source, field=name,
        ) from None
    return pc.if_else(col.is_null(), fallback, col)


def _has_tz(col: pa.Array) -> bool:
    sample = col.drop_null()[:1].to_pylist()
    return bool(sample) and (sample[0].endswith("Z") or "+" in sample[0][10:])
