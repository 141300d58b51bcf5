"""Value encoding shared by the online store backends, and the checks both apply.

Values are kept in their canonical types, never as JSON: scalars natively (SQLite) or as exact
text (Redis); list features as the raw little-endian bytes of their elements (``int32`` token
ids: 4 bytes each, the length implied by the byte size); lists of strings as a ``uint32``
count, ``uint32`` byte lengths, then the UTF-8 bytes. Timestamps and event times are exact
microseconds since the epoch.

Fixed-length integer lists (``input_ids: list<int32>[128]``) are stored compactly when that
is smaller: one byte naming the element width (1: ``uint8``, 2: ``uint16``, 4: ``int32``, 8:
``int64``, the narrowest that holds the row), then the row's elements up to the start of its
trailing run of equal values (the padding), which the reader repeats back to the full length.
A token-id row of 128 ``int32`` with half of it padding takes ~130 bytes instead of 512, an
attention mask ~65, so ingest pushes a third of the bytes through SQLite's WAL. A blob of
exactly ``length * itemsize`` bytes is the raw elements (what earlier versions wrote, and rows
that would not shrink); a compact blob can never have that size (see ``_encode_compact``).
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.clock import as_utc
from loopworks.errors import ConfigurationError, ConflictError, ValidationError
from loopworks.featurestore.definitions import FeatureDefinition, FeatureType

Record = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RESERVED = "_lw_"  # prefix of the stores' own columns / hash fields
_NUMPY: dict[str, np.dtype[Any]] = {
    "int32": np.dtype("<i4"), "int64": np.dtype("<i8"), "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"), "bool": np.dtype("?")}
#: Element width code (the first byte of a compact list) -> its type.
_COMPACT: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<i4"), 8: np.dtype("<i8")}
_COMPACT_ELEMENTS = ("int32", "int64")
#: ``array`` type codes of the compact widths where they are native little-endian integers
#: of that size (NumPy decodes the others).
_ARRAY_CODES: dict[int, str] = {} if sys.byteorder != "little" else {
    size: code for size, code in ((1, "B"), (2, "H"), (4, "i"), (8, "q"))
    if array(code).itemsize == size}


def to_micros(when: datetime) -> int:
    """Exact microseconds since the epoch; naive datetimes are taken as UTC."""
    return (as_utc(when) - _EPOCH) // timedelta(microseconds=1)


def _datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def check_feature_names(group: str, definitions: list[FeatureDefinition]) -> None:
    seen: set[str] = set()
    for definition in definitions:
        lowered = definition.name.lower()  # SQLite column names ignore case
        if lowered.startswith(_RESERVED) or lowered in seen:
            raise ConfigurationError(
                f"feature group {group!r}: feature name {definition.name!r} is reserved or "
                "differs from another only by case; the online store cannot hold it",
                feature_group=group, feature=definition.name)
        seen.add(lowered)


def latest_per_id(table: pa.Table, record_id: str, event_time: str
                  ) -> tuple[pa.Table, list[str], list[int]]:
    """Keep, per id, the row with the greatest event time (ties: the last row)."""
    ids = _array(table.column(record_id))
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
        ids = ids.cast(pa.string())
    times = _array(table.column(event_time)).cast(pa.int64()).to_numpy()
    codes = ids.dictionary_encode().indices.to_numpy()
    if len(ids) and int(codes.max()) + 1 < len(ids):
        order = np.lexsort((np.arange(len(ids)), times, codes))
        ordered = codes[order]
        last = np.append(ordered[1:] != ordered[:-1], True)
        keep = np.sort(order[last])
        table, ids, times = table.take(keep), ids.take(keep), times[keep]
    return table, ids.to_pylist(), times.tolist()


def _array(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def column_values(table: pa.Table, definition: FeatureDefinition, group: str) -> list[Any]:
    """Python values of one column: ints for timestamps (µs), bytes for lists, None for null."""
    if definition.name not in table.column_names:
        return [None] * table.num_rows
    array = _array(table.column(definition.name))
    if array.type != definition.arrow_type:
        array = array.cast(definition.arrow_type)
    if definition.type is FeatureType.LIST:
        return _encode_lists(array, definition, group)
    if definition.type is FeatureType.TIMESTAMP:
        array = array.cast(pa.int64())
    return array.to_pylist()


def _encode_lists(array: pa.Array, definition: FeatureDefinition, group: str) -> list[Any]:
    rows = len(array)
    if pa.types.is_fixed_size_list(array.type):
        size = array.type.list_size
        child = array.values.slice(array.offset * size, rows * size)
        bounds = np.arange(rows + 1) * size
    else:
        offsets = array.offsets.to_numpy()
        child = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        bounds = offsets - offsets[0]
    if child.null_count:
        _reject_null_elements(array, definition, group)
        child = child.fill_null({"string": "", "bool": False}.get(definition.element or "", 0))
    if definition.element == "string":
        strings = [s.encode() for s in child.to_pylist()]
        out: list[Any] = [_pack_strings(strings[a:b])
                          for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    else:
        values = child.to_numpy(zero_copy_only=False).astype(_NUMPY[definition.element or "int64"],
                                                             copy=False)
        if pa.types.is_fixed_size_list(array.type) and definition.element in _COMPACT_ELEMENTS \
                and size:
            out = _encode_compact(values.reshape(rows, size))
        elif pa.types.is_fixed_size_list(array.type):
            out = [row.tobytes() for row in values.reshape(rows, size)]
        else:
            data, step = values.tobytes(), values.itemsize
            out = [data[a * step:b * step]
                   for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    if array.null_count:
        for row in np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False)):
            out[row] = None
    return out


def _encode_compact(values: np.ndarray) -> list[Any]:
    """Rows of a fixed-length integer list (2-D array) in the compact form of the module doc.

    A compact blob is ``1 + kept * width`` bytes with ``1 <= kept <= length`` and ``width``
    at most the item size; it never equals the raw size ``length * itemsize``: for a width
    of 2, 4 or 8 its size is odd, and for a width of 1 it would need ``kept`` above
    ``length``. A row that would not shrink (full width, no trailing run) is stored raw.
    """
    out: list[Any] = []
    # Slices of a few thousand rows keep the temporaries in the CPU cache and in memory the
    # allocator reuses (fresh large arrays cost a page fault per 4 KiB).
    for start in range(0, len(values), _COMPACT_ROWS):
        out += _encode_compact_rows(values[start:start + _COMPACT_ROWS])
    return out


_COMPACT_ROWS = 4096


def _encode_compact_rows(values: np.ndarray) -> list[Any]:
    rows, size = values.shape
    itemsize = values.dtype.itemsize
    trailing = (values == values[:, -1:])[:, ::-1]
    run = np.where(trailing.all(axis=1), size, trailing.argmin(axis=1))
    kept = size - run + 1  # the run's first value stays: the reader repeats it
    low, high = values.min(axis=1), values.max(axis=1)
    width = np.full(rows, itemsize)
    for code in sorted((c for c in _COMPACT if c < itemsize), reverse=True):
        info = np.iinfo(_COMPACT[code])
        width[(low >= info.min) & (high <= info.max)] = code
    raw = (width == itemsize) & (kept == size)
    codes = np.unique(width).tolist()
    out: list[Any] = [None] * rows
    for code in codes:
        chosen = np.flatnonzero(width == code) if len(codes) > 1 else np.arange(rows)
        group = values[chosen] if len(codes) > 1 else values
        stride = 1 + size * code
        matrix = np.empty((len(chosen), stride), dtype=np.uint8)
        matrix[:, 0] = code
        matrix[:, 1:] = group.astype(_COMPACT[code] if code < itemsize else values.dtype,
                                     copy=False).view(np.uint8).reshape(len(chosen), -1)
        data = matrix.tobytes()
        # Row i of the group is data[i * stride + first : i * stride + 1 + kept * width];
        # raw rows skip the width byte (first = 1).
        base = np.arange(len(chosen)) * stride
        starts = (base + raw[chosen]).tolist()
        stops = (base + 1 + kept[chosen] * code).tolist()
        if len(codes) == 1:
            return [data[a:b] for a, b in zip(starts, stops, strict=True)]
        for row, start, stop in zip(chosen.tolist(), starts, stops, strict=True):
            out[row] = data[start:stop]
    return out


def _decode_compact(blob: bytes, dtype: np.dtype[Any], length: int) -> list[int]:
    """One fixed-length integer list, raw or compact (see ``_encode_compact``)."""
    if len(blob) == length * dtype.itemsize:
        code, start = dtype.itemsize, 0
    else:
        code, start = blob[0], 1
    values: list[int]
    if code in _ARRAY_CODES:  # the array module decodes short rows faster than NumPy
        decoded = array(_ARRAY_CODES[code])
        decoded.frombytes(memoryview(blob)[start:])
        values = decoded.tolist()
    else:
        values = np.frombuffer(blob, _COMPACT[code], offset=start).tolist()
    if len(values) < length:
        values += [values[-1]] * (length - len(values))
    return values


def _reject_null_elements(array: pa.Array, definition: FeatureDefinition, group: str) -> None:
    flat = pc.list_flatten(array)  # values of non-null lists only
    if flat.null_count:
        first = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
        row = pc.list_parent_indices(array)[first].as_py()
        raise ValidationError(
            f"feature group {group!r}: row {row}: feature {definition.name!r} has a null "
            "element; online list features hold no nulls inside a list (null the whole list)",
            feature_group=group, row=row, feature=definition.name)


def _pack_strings(strings: list[bytes]) -> bytes:
    return struct.pack(f"<{len(strings) + 1}I", len(strings), *map(len, strings)) \
        + b"".join(strings)


def _unpack_strings(blob: bytes) -> list[str]:
    count = struct.unpack_from("<I", blob)[0]
    lengths = struct.unpack_from(f"<{count}I", blob, 4)
    out, position = [], 4 * (count + 1)
    for length in lengths:
        out.append(blob[position:position + length].decode())
        position += length
    return out


def assemble_records(chosen: list[FeatureDefinition], hits: Sequence[Sequence[Any] | None],
                     start: int, *, redis: bool) -> list[Record | None]:
    """Records from raw rows (``None``: no record), decoded a column at a time."""
    present = [hit for hit in hits if hit is not None]
    if not present:
        return [None] * len(hits)
    names = [d.name for d in chosen]
    columns = [_decode_column([row[start + i] for row in present], d, redis=redis)
               for i, d in enumerate(chosen)]
    records = iter([dict(zip(names, values, strict=True))
                    for values in zip(*columns, strict=True)])
    return [None if hit is None else next(records) for hit in hits]


def _decode_column(values: list[Any], definition: FeatureDefinition, *, redis: bool
                   ) -> list[Any]:
    """Stored values (Redis: bytes) back to Python values."""
    kind = definition.type
    if kind is FeatureType.LIST:
        return _decode_lists(values, definition)
    if kind is FeatureType.TIMESTAMP:
        return [None if v is None else _EPOCH + timedelta(microseconds=int(v)) for v in values]
    if kind is FeatureType.BOOLEAN:
        return [None if v is None else (v == b"1" if redis else bool(v)) for v in values]
    if kind is FeatureType.FRACTIONAL:
        return [None if v is None else struct.unpack("<d", v)[0]
                if not redis and isinstance(v, bytes) else float(v) for v in values]
    if redis and kind is FeatureType.STRING:
        return [None if v is None else v.decode() for v in values]
    if redis:
        return [None if v is None else int(v) for v in values]
    return values


def decoder_for(definition: FeatureDefinition) -> Callable[[Any], Any] | None:
    """Decoder of one non-null SQLite value of a feature (``None``: stored as is)."""
    kind = definition.type
    if kind is FeatureType.LIST:
        if definition.element == "string":
            return _unpack_strings
        dtype = _NUMPY[definition.element or "int64"]
        length = definition.length
        if length and definition.element in _COMPACT_ELEMENTS:
            return lambda blob: _decode_compact(blob, dtype, length)
        return lambda blob: np.frombuffer(blob, dtype).tolist()
    if kind is FeatureType.TIMESTAMP:
        return _datetime
    if kind is FeatureType.BOOLEAN:
        return bool
    if kind is FeatureType.FRACTIONAL:
        return lambda v: struct.unpack("<d", v)[0] if isinstance(v, bytes) else v
    return None


def _decode_lists(blobs: list[bytes | None], definition: FeatureDefinition) -> list[Any]:
    if definition.element == "string":
        return [None if b is None else _unpack_strings(b) for b in blobs]
    dtype = _NUMPY[definition.element or "int64"]
    if definition.length and definition.element in _COMPACT_ELEMENTS:
        length = definition.length
        return [None if b is None else _decode_compact(b, dtype, length) for b in blobs]
    if definition.length and None not in blobs and len(blobs) > 1:
        joined = b"".join(b for b in blobs if b is not None)  # one numpy call per column
        if len(joined) == len(blobs) * definition.length * dtype.itemsize:
            return np.frombuffer(joined, dtype).reshape(len(blobs), -1).tolist()
    return [None if b is None else np.frombuffer(b, dtype).tolist() for b in blobs]


def selected_features(definitions: list[FeatureDefinition], features: Sequence[str] | None,
                      always: Sequence[str], group: str) -> list[FeatureDefinition]:
    if features is None:
        return definitions
    names = {d.name for d in definitions}
    unknown = [f for f in features if f not in names]
    if unknown:
        raise ConfigurationError(
            f"feature group {group!r}: unknown feature(s) {', '.join(map(repr, unknown))}",
            feature_group=group, feature=unknown[0], valid_values=sorted(names))
    wanted = {*features, *always}
    return [d for d in definitions if d.name in wanted]


def version_conflict(group: str, record_id: str, stored: int, asked: int) -> ConflictError:
    stored_at, asked_at = _datetime(stored).isoformat(), _datetime(asked).isoformat()
    return ConflictError(
        f"feature group {group!r}: record {record_id!r} has a newer event time ({stored_at}) "
        f"than the hard delete ({asked_at}); delete as of {stored_at} or later",
        feature_group=group, record_id=record_id, event_time=asked_at,
        stored_event_time=stored_at)


def check_ttl(ttl_seconds: float | None) -> None:
    if ttl_seconds is not None and not ttl_seconds > 0:
        raise ConfigurationError(f"ttl_seconds must be positive or None, got {ttl_seconds!r}",
                                 setting="ttl_seconds")


def redact_url(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)
