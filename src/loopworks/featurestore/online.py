"""The online store: the latest record per id, by event time, for low-latency reads.

One small contract, :class:`OnlineStore`, with an embedded default (:class:`SQLiteOnlineStore`)
and a server backend (:class:`RedisOnlineStore`), chosen by URL in :func:`open_online_store`.

Semantics shared by both backends (one contract test suite runs against each):

* **Upsert if newer.** A record is stored unless the stored one for its id has a strictly
  newer event time; on equal event times the later write wins. Within one table the row with
  the greatest event time per id wins (ties: the last row). A table lands atomically.
* **TTL.** A record written with ``ttl_seconds`` expires that many seconds after it was
  *written* (wall clock of the writer), not after its event time. An expired record is gone:
  it is not served and no longer blocks older writes.
* **Soft delete** leaves a tombstone carrying the delete's event time; it is never served,
  never expires, and blocks older writes (a newer write revives the id). **Hard delete**
  removes the record entirely, so an older write arriving afterwards lands again.

Values are kept in their canonical types, never as JSON: scalars natively (SQLite) or as exact
text (Redis); list features as the raw little-endian bytes of their elements (``int32`` token
ids: 4 bytes each, the length implied by the byte size); lists of strings as a ``uint32``
count, ``uint32`` byte lengths, then the UTF-8 bytes.
"""

from __future__ import annotations

import math
import re
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.errors import (
    ConfigurationError,
    ConflictError,
    MissingDependencyError,
    ValidationError,
)
from loopworks.featurestore.definitions import FeatureDefinition, FeatureType

__all__ = ["OnlineStore", "RedisOnlineStore", "SQLiteOnlineStore", "open_online_store"]

Record = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RESERVED = "_lw_"  # prefix of the stores' own columns / hash fields
_NUMPY: dict[str, np.dtype[Any]] = {
    "int32": np.dtype("<i4"), "int64": np.dtype("<i8"), "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"), "bool": np.dtype("?")}


@runtime_checkable
class OnlineStore(Protocol):
    """Latest record per id by event time; see the module docstring for the semantics."""

    def write(self, group: str, table: pa.Table, definitions: list[FeatureDefinition], *,
              record_id: str, event_time: str, ttl_seconds: float | None = None) -> int:
        """Upsert-if-newer every row of a conformed table, atomically.

        Args:
            group: Feature group name.
            table: Columns exactly the definitions, canonical Arrow types, no null id or
                event time (the output of ``conform_table``).
            definitions: The group's feature definitions.
            record_id: Name of the record identifier feature.
            event_time: Name of the event time feature.
            ttl_seconds: Records expire this long after now; ``None``: never.

        Returns:
            How many records were written (not superseded by a newer stored one).
        """
        ...

    def read(self, group: str, ids: Sequence[str], definitions: list[FeatureDefinition],
             features: Sequence[str] | None = None) -> list[Record | None]:
        """Latest records in the order of ``ids``; ``None`` if missing, deleted or expired.

        Values are Python values: lists for list features, UTC datetimes for timestamps.
        ``features`` limits the keys; the record id and event time are always included.
        """
        ...

    def delete(self, group: str, record_id: str, event_time: datetime, *, hard: bool,
               definitions: list[FeatureDefinition], record_id_name: str,
               event_time_name: str) -> bool:
        """Delete a record as of ``event_time``.

        Returns:
            ``True`` if applied; ``False`` for a soft delete older than the stored record
            (nothing changes).

        Raises:
            ConflictError: A hard delete older than the stored record.
        """
        ...

    def drop(self, group: str) -> None:
        """Remove every record of the group."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_online_store(url: str | None, home: Path) -> OnlineStore:
    """Open the online store named by ``url``.

    Args:
        url: ``None``/empty or ``sqlite:///PATH`` (SQLAlchemy style: ``sqlite:////abs/path``
            or ``sqlite:///relative/path``; ``?synchronous=OFF`` trades crash safety for
            ingest speed) for the embedded store; ``redis://HOST:PORT/DB`` or
            ``rediss://...`` for Redis.
        home: loopworks home; the default SQLite file is ``home / "online.sqlite"``.

    Raises:
        ConfigurationError: Unsupported URL scheme.
        MissingDependencyError: ``redis`` is not installed for a Redis URL.
    """
    if not url or url in ("sqlite://", "sqlite:///"):
        return SQLiteOnlineStore(Path(home) / "online.sqlite")
    if url.startswith("sqlite:///"):
        path, _, query = url.removeprefix("sqlite:///").partition("?")
        options = dict(parse_qsl(query))
        return SQLiteOnlineStore(path or Path(home) / "online.sqlite",
                                 synchronous=options.get("synchronous", "NORMAL"))
    if url.startswith(("redis://", "rediss://")):
        return RedisOnlineStore(url)
    raise ConfigurationError(
        f"unsupported online store URL {_redact(url)!r}; use sqlite:///PATH (default: "
        "online.sqlite in the loopworks home) or redis://HOST:PORT/DB (rediss:// for TLS)",
        setting="online_store_url", valid_values=["sqlite:///", "redis://", "rediss://"])


# --------------------------------------------------------------------------- encoding
def _micros(when: datetime) -> int:
    """Exact microseconds since the epoch; naive datetimes are taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(microseconds=1)


def _datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _check_names(group: str, definitions: list[FeatureDefinition]) -> None:
    seen: set[str] = set()
    for definition in definitions:
        lowered = definition.name.lower()  # SQLite column names ignore case
        if lowered.startswith(_RESERVED) or lowered in seen:
            raise ConfigurationError(
                f"feature group {group!r}: feature name {definition.name!r} is reserved or "
                "differs from another only by case; the online store cannot hold it",
                feature_group=group, feature=definition.name)
        seen.add(lowered)


def _latest_per_id(table: pa.Table, record_id: str, event_time: str
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


def _column_values(table: pa.Table, definition: FeatureDefinition, group: str) -> list[Any]:
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
        if pa.types.is_fixed_size_list(array.type):
            out = [row.tobytes() for row in values.reshape(rows, size)]
        else:
            data, step = values.tobytes(), values.itemsize
            out = [data[a * step:b * step]
                   for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    if array.null_count:
        for row in np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False)):
            out[row] = None
    return out


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


def _assemble(chosen: list[FeatureDefinition], hits: Sequence[Sequence[Any] | None], start: int,
              *, redis: bool) -> list[Record | None]:
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


def _decode_lists(blobs: list[bytes | None], definition: FeatureDefinition) -> list[Any]:
    if definition.element == "string":
        return [None if b is None else _unpack_strings(b) for b in blobs]
    dtype = _NUMPY[definition.element or "int64"]
    if definition.length and None not in blobs and len(blobs) > 1:
        joined = b"".join(b for b in blobs if b is not None)  # one numpy call per column
        if len(joined) == len(blobs) * definition.length * dtype.itemsize:
            return np.frombuffer(joined, dtype).reshape(len(blobs), -1).tolist()
    return [None if b is None else np.frombuffer(b, dtype).tolist() for b in blobs]


def _selected(definitions: list[FeatureDefinition], features: Sequence[str] | None,
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


def _conflict(group: str, record_id: str, stored: int, asked: int) -> ConflictError:
    stored_at, asked_at = _datetime(stored).isoformat(), _datetime(asked).isoformat()
    return ConflictError(
        f"feature group {group!r}: record {record_id!r} has a newer event time ({stored_at}) "
        f"than the hard delete ({asked_at}); delete as of {stored_at} or later",
        feature_group=group, record_id=record_id, event_time=asked_at,
        stored_event_time=stored_at)


def _check_ttl(ttl_seconds: float | None) -> None:
    if ttl_seconds is not None and not ttl_seconds > 0:
        raise ConfigurationError(f"ttl_seconds must be positive or None, got {ttl_seconds!r}",
                                 setting="ttl_seconds")


def _redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


# ----------------------------------------------------------------------------- SQLite
_SQL_TYPES = {FeatureType.STRING: "TEXT", FeatureType.INTEGRAL: "INTEGER",
              FeatureType.FRACTIONAL: "REAL", FeatureType.BOOLEAN: "INTEGER",
              FeatureType.TIMESTAMP: "INTEGER", FeatureType.LIST: "BLOB"}
_META = '"_lw_online_groups"'
_ALIVE = "_lw_deleted = 0 AND (_lw_expires_at IS NULL OR _lw_expires_at > ?)"
_READ_CHUNK = 500


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _table(group: str) -> str:
    return _q("lw_online_" + group)


class SQLiteOnlineStore:
    """Embedded online store: one SQLite table per group, in WAL mode.

    Scalars are stored natively (TEXT, INTEGER, REAL, 0/1, timestamps as INTEGER µs; a NaN
    as the 8 bytes of the double, since SQLite turns NaN into NULL) and list features as
    BLOBs of raw little-endian element bytes. Every row is one
    ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` statement, all in one transaction.
    One connection guarded by a lock serves every thread; other processes may share the
    file (``BEGIN IMMEDIATE`` with a 30 s busy timeout).

    Args:
        path: The database file (created with its parent folders); ``":memory:"`` works.
        synchronous: SQLite's ``synchronous`` setting. ``NORMAL`` (default) keeps the file
            intact through power loss; ``OFF`` skips the fsyncs at WAL checkpoints (faster
            bulk ingest on slow disks; an OS crash may corrupt the file, which can then only
            be rebuilt from the offline store); ``FULL`` also syncs every commit.

    Raises:
        ConfigurationError: ``synchronous`` is not OFF, NORMAL or FULL.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL"):
            raise ConfigurationError(
                f"online store: synchronous must be OFF, NORMAL or FULL, got {synchronous!r}",
                setting="synchronous", valid_values=["OFF", "NORMAL", "FULL"])
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
        self._lock = threading.RLock()
        self._columns: dict[str, set[str]] = {}
        self._names: dict[str, tuple[str, str]] = {}
        self._db.execute("PRAGMA page_size=8192")  # new files only: ~1 KiB token-id rows
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {_META} (grp TEXT PRIMARY KEY, "
                         "record_id TEXT NOT NULL, event_time TEXT NOT NULL)")

    def __repr__(self) -> str:
        return f"SQLiteOnlineStore({self.path!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                self._columns.clear()  # the caches may describe rolled-back DDL
                self._names.clear()
                raise
            self._db.execute("COMMIT")

    def _existing(self, group: str, refresh: bool = False) -> set[str]:
        if refresh or group not in self._columns:
            info = self._db.execute(f"PRAGMA table_info({_table(group)})").fetchall()
            self._columns[group] = {row[1] for row in info}
        return self._columns[group]

    def _ensure(self, group: str, definitions: list[FeatureDefinition], record_id: str,
                event_time: str) -> None:
        """Create the group's table, add new feature columns, record the key names."""
        _check_names(group, definitions)
        existing = self._existing(group, refresh=True)
        if not existing:
            columns = "".join(f", {_q(d.name)} {_SQL_TYPES[d.type]}" for d in definitions)
            self._db.execute(
                f"CREATE TABLE {_table(group)} (_lw_id TEXT PRIMARY KEY NOT NULL, "
                "_lw_event_time INTEGER NOT NULL, _lw_deleted INTEGER NOT NULL DEFAULT 0, "
                f"_lw_expires_at INTEGER{columns})")
            self._db.execute(f"CREATE INDEX {_q('lw_expiry_' + group)} ON "
                             f"{_table(group)} (_lw_expires_at) "
                             "WHERE _lw_expires_at IS NOT NULL")
        else:
            for d in definitions:
                if d.name not in existing:
                    self._db.execute(f"ALTER TABLE {_table(group)} ADD COLUMN {_q(d.name)} "
                                     f"{_SQL_TYPES[d.type]}")
        self._existing(group, refresh=True)
        if self._names.get(group) != (record_id, event_time):
            self._db.execute(f"INSERT OR REPLACE INTO {_META} VALUES (?, ?, ?)",
                             (group, record_id, event_time))
            self._names[group] = (record_id, event_time)

    def write(self, group: str, table: pa.Table, definitions: list[FeatureDefinition], *,
              record_id: str, event_time: str, ttl_seconds: float | None = None) -> int:
        """Upsert-if-newer all rows in one transaction; see :meth:`OnlineStore.write`."""
        _check_ttl(ttl_seconds)
        if table.num_rows == 0:
            return 0
        table, ids, times = _latest_per_id(table, record_id, event_time)
        columns = [self._sql_values(_column_values(table, d, group), d) for d in definitions]
        names = "".join(f", {_q(d.name)}" for d in definitions)
        updates = "".join(f", {_q(d.name)} = excluded.{_q(d.name)}" for d in definitions)
        name = _table(group)
        sql = (f"INSERT INTO {name} (_lw_id, _lw_event_time, _lw_expires_at{names}) "
               f"VALUES (?, ?, ?{', ?' * len(definitions)}) ON CONFLICT (_lw_id) DO UPDATE SET "
               "_lw_event_time = excluded._lw_event_time, _lw_deleted = 0, "
               f"_lw_expires_at = excluded._lw_expires_at{updates} "
               f"WHERE excluded._lw_event_time >= {name}._lw_event_time "
               f"OR {name}._lw_expires_at <= ?")
        with self._transaction() as db:
            self._ensure(group, definitions, record_id, event_time)
            now = time.time_ns() // 1000
            expires = None if ttl_seconds is None else now + math.ceil(ttl_seconds * 1e6)
            db.execute(f"DELETE FROM {name} WHERE _lw_expires_at <= ?", (now,))
            cursor = db.executemany(sql, zip(ids, times, repeat(expires), *columns,
                                             repeat(now)))
            return cursor.rowcount

    @staticmethod
    def _sql_values(values: list[Any], definition: FeatureDefinition) -> list[Any]:
        if definition.type is FeatureType.FRACTIONAL:
            for i, value in enumerate(values):
                if value is not None and value != value:  # NaN: keep its exact bits
                    values[i] = struct.pack("<d", value)
        return values

    def read(self, group: str, ids: Sequence[str], definitions: list[FeatureDefinition],
             features: Sequence[str] | None = None) -> list[Record | None]:
        """Latest records in order of ``ids``; see :meth:`OnlineStore.read`."""
        with self._lock:
            existing = self._existing(group)
            if not existing or any(d.name not in existing for d in definitions):
                existing = self._existing(group, refresh=True)
            if not existing:
                return [None] * len(ids)
            chosen = _selected(definitions, features, self._key_names(group), group)
            try:
                found = self._fetch(group, ids, chosen, existing)
            except sqlite3.OperationalError:
                if self._existing(group, refresh=True):  # not dropped by another process
                    raise
                return [None] * len(ids)
        return _assemble(chosen, [found.get(i) for i in ids], 1, redis=False)

    def _fetch(self, group: str, ids: Sequence[str], chosen: list[FeatureDefinition],
               existing: set[str]) -> dict[str, tuple[Any, ...]]:
        # Features added since the table was made and never written read as NULL.
        select = ", ".join(["_lw_id", *(_q(d.name) if d.name in existing else "NULL"
                                        for d in chosen)])
        now = time.time_ns() // 1000
        found: dict[str, tuple[Any, ...]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _READ_CHUNK):
            chunk = unique[start:start + _READ_CHUNK]
            for row in self._db.execute(
                    f"SELECT {select} FROM {_table(group)} WHERE _lw_id IN "
                    f"({', '.join('?' * len(chunk))}) AND {_ALIVE}", (*chunk, now)):
                found[row[0]] = row
        return found

    def _key_names(self, group: str) -> tuple[str, ...]:
        if group not in self._names:
            row = self._db.execute(f"SELECT record_id, event_time FROM {_META} WHERE grp = ?",
                                   (group,)).fetchone()
            if row is None:
                return ()
            self._names[group] = (row[0], row[1])
        return self._names[group]

    def delete(self, group: str, record_id: str, event_time: datetime, *, hard: bool,
               definitions: list[FeatureDefinition], record_id_name: str,
               event_time_name: str) -> bool:
        """Soft or hard delete as of ``event_time``; see :meth:`OnlineStore.delete`."""
        asked = _micros(event_time)
        name = _table(group)
        with self._transaction() as db:
            self._ensure(group, definitions, record_id_name, event_time_name)
            now = time.time_ns() // 1000
            row = db.execute(f"SELECT _lw_event_time FROM {name} WHERE _lw_id = ? AND "
                             "(_lw_expires_at IS NULL OR _lw_expires_at > ?)",
                             (record_id, now)).fetchone()
            if row is not None and row[0] > asked:
                if hard:
                    raise _conflict(group, record_id, row[0], asked)
                return False
            if hard:
                db.execute(f"DELETE FROM {name} WHERE _lw_id = ?", (record_id,))
            else:
                db.execute(f"INSERT INTO {name} (_lw_id, _lw_event_time, _lw_deleted) "
                           "VALUES (?, ?, 1) ON CONFLICT (_lw_id) DO UPDATE SET "
                           "_lw_event_time = excluded._lw_event_time, _lw_deleted = 1, "
                           "_lw_expires_at = NULL", (record_id, asked))
            return True

    def drop(self, group: str) -> None:
        """Drop the group's table."""
        with self._transaction() as db:
            db.execute(f"DROP TABLE IF EXISTS {_table(group)}")
            db.execute(f"DELETE FROM {_META} WHERE grp = ?", (group,))
            self._columns.pop(group, None)
            self._names.pop(group, None)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


# ------------------------------------------------------------------------------ Redis
# KEYS: record keys. ARGV: expire-at ms ('' = never), n, n field names, then one packed
# blob holding, per record, n + 1 int32 lengths (event time, each field; -1 = null) and the
# bytes (one argument per chunk: redis-py packs large argument lists slowly). Event times
# are compared as integer strings, exact beyond 2^53 where Lua numbers are not.
_AT_LEAST_LUA = """
local function at_least(a, b)
  local an, bn = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if an ~= bn then return bn end
  if #a ~= #b then if an then return #a < #b end return #a > #b end
  if an then return a <= b end
  return a >= b
end
"""
_WRITE_LUA = _AT_LEAST_LUA + """
local expires, n = ARGV[1], tonumber(ARGV[2])
local blob, header = ARGV[3 + n], '<' .. string.rep('i4', n + 1)
local pos, written = 1, 0
for k = 1, #KEYS do
  local lengths = {struct.unpack(header, blob, pos)}
  pos = lengths[n + 2]
  local et = string.sub(blob, pos, pos + lengths[1] - 1)
  local stored = redis.call('HGET', KEYS[k], '_lw_et')
  if (not stored) or at_least(et, stored) then
    local args, at = {'_lw_et', et}, pos + lengths[1]
    for i = 1, n do
      local length = lengths[i + 1]
      if length >= 0 then
        args[#args + 1] = ARGV[2 + i]
        args[#args + 1] = string.sub(blob, at, at + length - 1)
        at = at + length
      end
    end
    redis.call('DEL', KEYS[k])
    redis.call('HSET', KEYS[k], unpack(args))
    if expires ~= '' then redis.call('PEXPIREAT', KEYS[k], expires) end
    written = written + 1
  end
  pos = pos + lengths[1]
  for i = 1, n do
    if lengths[i + 1] > 0 then pos = pos + lengths[i + 1] end
  end
end
return written
"""
# KEYS[1]: record key. ARGV: event time µs, '1' for hard. Returns {applied, stored event time}.
_DELETE_LUA = _AT_LEAST_LUA + """
local stored = redis.call('HGET', KEYS[1], '_lw_et')
if stored and not at_least(ARGV[1], stored) then return {0, stored} end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], '_lw_et', ARGV[1], '_lw_del', '1')
  redis.call('PERSIST', KEYS[1])
end
return {1, stored or ''}
"""
_WRITE_CHUNK = 500


class RedisOnlineStore:
    """Redis online store: one hash per record, latest-wins enforced by a Lua script.

    Keys are ``lw:{<group>}:r:<id>`` (the group percent-encoded, so ids may hold any
    character, colons included; the braces keep a group in one Redis Cluster slot) and
    ``lw:{<group>}:meta`` for the key feature names. Hash fields: one per non-null feature
    (scalars as exact text: ``repr`` floats, ints, ``1``/``0``, timestamps as µs; lists as raw
    little-endian bytes), ``_lw_et`` (event time µs) and ``_lw_del`` on tombstones. A write
    sends one script call per 500 records inside one MULTI/EXEC, so the table lands
    atomically; Redis serves nothing else while it applies it, so keep batches moderate
    (the feature group ingests 50,000 rows at a time). TTL uses ``PEXPIREAT``.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://...``.

    Raises:
        MissingDependencyError: The ``redis`` package is not installed.
    """

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError:
            raise MissingDependencyError("redis", "redis", "the Redis online store") from None
        self.url = url
        self._redis = redis
        self._client = redis.Redis.from_url(url, decode_responses=False)
        self._write_script = self._client.register_script(_WRITE_LUA)
        self._delete_script = self._client.register_script(_DELETE_LUA)
        self._names: dict[str, tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"RedisOnlineStore({_redact(self.url)!r})"

    @staticmethod
    def _prefix(group: str) -> str:
        return "lw:{" + quote(group, safe="") + "}:"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise ConfigurationError(
                f"cannot reach the Redis online store at {_redact(self.url)}: {exc}; check "
                "the server and LOOPWORKS_ONLINE_STORE_URL", setting="online_store_url"
            ) from None

    def write(self, group: str, table: pa.Table, definitions: list[FeatureDefinition], *,
              record_id: str, event_time: str, ttl_seconds: float | None = None) -> int:
        """Upsert-if-newer all rows in one MULTI/EXEC; see :meth:`OnlineStore.write`."""
        _check_ttl(ttl_seconds)
        _check_names(group, definitions)
        if table.num_rows == 0:
            return 0
        table, ids, times = _latest_per_id(table, record_id, event_time)
        columns = [_redis_values(_column_values(table, d, group), d) for d in definitions]
        stamps = [str(t).encode() for t in times]
        prefix = self._prefix(group) + "r:"
        head = [len(definitions), *(d.name for d in definitions)]
        header = struct.Struct("<" + "i" * (len(definitions) + 1))
        with self._errors():
            pipe = self._client.pipeline(transaction=True)
            if self._names.get(group) != (record_id, event_time):
                pipe.hset(prefix[:-2] + "meta",
                          mapping={"record_id": record_id, "event_time": event_time})
            expires = "" if ttl_seconds is None else \
                math.ceil((time.time() + ttl_seconds) * 1000)
            for start in range(0, len(ids), _WRITE_CHUNK):
                end = start + _WRITE_CHUNK
                parts: list[bytes] = []
                for stamp, *values in zip(stamps[start:end],
                                          *(column[start:end] for column in columns),
                                          strict=True):
                    parts.append(header.pack(len(stamp), *(-1 if v is None else len(v)
                                                           for v in values)))
                    parts.append(stamp)
                    parts.extend(v for v in values if v is not None)
                args: list[Any] = [expires, *head, b"".join(parts)]
                self._write_script(keys=[prefix + i for i in ids[start:end]], args=args,
                                   client=pipe)
            results = pipe.execute()
            self._names[group] = (record_id, event_time)
        chunks = -(-len(ids) // _WRITE_CHUNK)
        return int(sum(results[-chunks:]))

    def read(self, group: str, ids: Sequence[str], definitions: list[FeatureDefinition],
             features: Sequence[str] | None = None) -> list[Record | None]:
        """Latest records in order of ``ids``; see :meth:`OnlineStore.read`."""
        prefix = self._prefix(group)
        with self._errors():
            always = self._key_names(group) if features is not None else ()
            chosen = _selected(definitions, features, always, group)
            fields = ["_lw_et", "_lw_del", *(d.name for d in chosen)]
            if len(ids) == 1:
                rows = [self._client.hmget(prefix + "r:" + ids[0], fields)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for record_id in ids:
                    pipe.hmget(prefix + "r:" + record_id, fields)
                rows = pipe.execute()
        hits = [row if row[0] is not None and row[1] is None else None for row in rows]
        return _assemble(chosen, hits, 2, redis=True)

    def _key_names(self, group: str) -> tuple[str, ...]:
        if group not in self._names:
            stored = self._client.hmget(self._prefix(group) + "meta", ["record_id", "event_time"])
            if None in stored:
                return ()
            self._names[group] = tuple(v.decode() if isinstance(v, bytes) else str(v)
                                       for v in stored)
        return self._names[group]

    def delete(self, group: str, record_id: str, event_time: datetime, *, hard: bool,
               definitions: list[FeatureDefinition], record_id_name: str,
               event_time_name: str) -> bool:
        """Soft or hard delete as of ``event_time``; see :meth:`OnlineStore.delete`."""
        asked = _micros(event_time)
        prefix = self._prefix(group)
        with self._errors():
            if self._names.get(group) != (record_id_name, event_time_name):
                self._client.hset(prefix + "meta", mapping={"record_id": record_id_name,
                                                            "event_time": event_time_name})
                self._names[group] = (record_id_name, event_time_name)
            applied, stored = self._delete_script(keys=[prefix + "r:" + record_id],
                                                  args=[asked, "1" if hard else "0"])
        if applied:
            return True
        if hard:
            raise _conflict(group, record_id, int(stored), asked)
        return False

    def drop(self, group: str) -> None:
        """Remove every key of the group (SCAN + UNLINK)."""
        pattern = self._prefix(group).replace("[", "\\[").replace("]", "\\]") + "*"
        with self._errors():
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
        self._names.pop(group, None)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _redis_values(values: list[Any], definition: FeatureDefinition) -> list[bytes | None]:
    """Hash field bytes: exact text for scalars (repr for floats), raw bytes for lists."""
    kind = definition.type
    if kind is FeatureType.LIST:
        return values
    if kind is FeatureType.BOOLEAN:
        return [None if v is None else (b"1" if v else b"0") for v in values]
    if kind is FeatureType.STRING:
        return [None if v is None else v.encode() for v in values]
    text = repr if kind is FeatureType.FRACTIONAL else str
    return [None if v is None else text(v).encode() for v in values]
