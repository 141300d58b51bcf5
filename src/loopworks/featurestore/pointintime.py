"""Point-in-time lookup by sorting: for each entity row, the last history row at or before it.

The same join as DuckDB's ``ASOF LEFT JOIN`` (kept in :mod:`.sql` as ``method="duckdb"``
and used in the tests as a cross-check), done with NumPy on integer keys: ids become codes,
times become ranks over the union of both sides, and ``(code, rank)`` packs into one int64.
One sort of the history and one ``searchsorted`` for all entity rows then find every match,
in entity order, with no join output to reorder. It is several times faster than the ASOF
join on the benchmark's million entity rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["asof_indices"]


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(
        zero_copy_only=False)


def _codes(ids: pa.ChunkedArray | pa.Array, unique: pa.Array) -> np.ndarray:
    """Position of each id in ``unique`` (-1 if absent); hashes each distinct id once."""
    if isinstance(ids, pa.ChunkedArray) and not pa.types.is_dictionary(ids.type):
        ids = ids.combine_chunks()
    encoded = ids if pa.types.is_dictionary(ids.type) else pc.dictionary_encode(ids)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    parts = []
    dictionary, mapping = None, None
    for chunk in chunks:
        # Chunks of one encoded column usually share a dictionary: look it up once.
        if dictionary is None or not chunk.dictionary.equals(dictionary):
            dictionary = chunk.dictionary
            mapping = pc.index_in(dictionary, value_set=unique).fill_null(-1).to_numpy(
                zero_copy_only=False).astype(np.int64)
        assert mapping is not None
        parts.append(mapping[chunk.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def asof_indices(
    entity_ids: pa.ChunkedArray | pa.Array,
    entity_times: pa.ChunkedArray | pa.Array,
    history_ids: pa.ChunkedArray | pa.Array,
    history_times: pa.ChunkedArray | pa.Array,
    history_write_times: pa.ChunkedArray | pa.Array,
    history_deleted: pa.ChunkedArray | pa.Array,
    *,
    ttl_seconds: float | None = None,
) -> pa.Array:
    """Index into the history for every entity row, or null where nothing applies.

    For entity row *i*: among history rows with the same id and event time at or before the
    entity time, the one with the latest event time and, among equal event times, the
    latest write. Null when there is none, when that row is a delete tombstone, or when it
    is older than ``ttl_seconds`` relative to the entity time.
    """
    n = len(entity_ids)
    if len(history_ids) == 0 or n == 0:
        return pa.nulls(n, pa.int64())
    unique = pc.unique(history_ids)
    hist_codes = pc.index_in(history_ids, value_set=unique).to_numpy(
        zero_copy_only=False).astype(np.int64)
    ent_codes = _codes(entity_ids, unique)
    hist_t = _micros(history_times)
    ent_t = _micros(entity_times)
    # Pack (id code, time) into one int64: the time offset itself when it fits next to the
    # code, else the time's rank among all times (one more sort).
    low = int(min(hist_t.min(), ent_t.min()))
    span = int(max(hist_t.max(), ent_t.max())) - low
    shift = max(1, span.bit_length())
    if shift + max(1, len(unique).bit_length()) <= 62:
        hist_low, ent_low = hist_t - low, ent_t - low
    else:
        _, ranks = np.unique(np.concatenate([hist_t, ent_t]), return_inverse=True)
        ranks = ranks.astype(np.int64)
        hist_low, ent_low = ranks[: len(hist_t)], ranks[len(hist_t):]
        shift = 32
    hist_key = (hist_codes << shift) | hist_low
    ent_key = (np.maximum(ent_codes, 0) << shift) | ent_low
    # Sort by key, then write time: among equal keys the latest write comes last.
    order = np.lexsort((_micros(history_write_times), hist_key))
    sorted_keys = hist_key[order]
    pos = np.searchsorted(sorted_keys, ent_key, side="right") - 1
    found = (pos >= 0) & (ent_codes >= 0)
    safe = np.where(found, pos, 0)
    found &= (sorted_keys[safe] >> shift) == ent_codes
    index = order[safe]
    deleted = np.asarray(history_deleted.to_numpy(zero_copy_only=False), dtype=bool)
    found &= ~deleted[index]
    if ttl_seconds is not None:
        found &= (ent_t - hist_t[index]) <= int(ttl_seconds * 1_000_000)
    return pa.array(index, type=pa.int64(), mask=~found)
