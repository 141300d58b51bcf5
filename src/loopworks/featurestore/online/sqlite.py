"""The embedded online store: one SQLite table per feature group."""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loopworks.errors import ConfigurationError
from loopworks.featurestore.definitions import FeatureDefinition, FeatureType
from loopworks.featurestore.online.encoding import (
    Record,
    assemble_records,
    check_feature_names,
    check_ttl,
    column_values,
    decoder_for,
    latest_per_id,
    selected_features,
    to_micros,
    version_conflict,
)
from loopworks.metadata.database import use_wal

__all__ = ["SQLiteOnlineStore"]

_SQL_TYPES = {FeatureType.STRING: "TEXT", FeatureType.INTEGRAL: "INTEGER",
              FeatureType.FRACTIONAL: "REAL", FeatureType.BOOLEAN: "INTEGER",
              FeatureType.TIMESTAMP: "INTEGER", FeatureType.LIST: "BLOB"}
_META = '"_lw_online_groups"'
_ALIVE = "_lw_deleted = 0 AND (_lw_expires_at IS NULL OR _lw_expires_at > ?)"
_READ_CHUNK = 500
_MMAP_BYTES = 1 << 30
_PAGE_BYTES = 32768


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _table(group: str) -> str:
    return _q("lw_online_" + group)


def _by_id(table: pa.Table, record_id: str) -> pa.Table:
    """The rows in id order: the upserts then walk the id index and the table in key order
    instead of jumping between pages (~15% less CPU on a batch of shuffled ids). The sort is
    stable, so rows of one id keep their order (the last of equal event times wins). A table
    already in order is returned as it is."""
    ids = table.column(record_id)
    if table.num_rows < 2 or pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py() is not False:
        return table
    return table.take(pc.sort_indices(ids))


class _ReadPlan:
    """What a read of some features of a group runs, and how it decodes a row."""

    def __init__(self, table: str, definitions: list[FeatureDefinition],
                 chosen: list[FeatureDefinition], existing: set[str]) -> None:
        self.definitions = definitions
        self.chosen = chosen
        self.complete = all(d.name in existing for d in definitions)
        # Features added since the table was made and never written read as NULL.
        columns = ", ".join(_q(d.name) if d.name in existing else "NULL" for d in chosen)
        self.one = f"SELECT {columns} FROM {table} WHERE _lw_id = ? AND {_ALIVE}"
        self.many = f"SELECT _lw_id, {columns} FROM {table} WHERE _lw_id IN "
        self._decoders = [(d.name, decoder_for(d)) for d in chosen]

    def record(self, row: Sequence[Any]) -> Record:
        """One stored row (the chosen columns) as a record."""
        return {name: value if value is None or decode is None else decode(value)
                for (name, decode), value in zip(self._decoders, row, strict=True)}


class SQLiteOnlineStore:
    """Embedded online store: one SQLite table per group, in WAL mode.

    Scalars are stored natively (TEXT, INTEGER, REAL, 0/1, timestamps as INTEGER µs; a NaN
    as the 8 bytes of the double, since SQLite turns NaN into NULL) and list features as
    BLOBs of little-endian element bytes (fixed-length integer lists compacted, see
    ``loopworks.featurestore.online.encoding``). Every row is one
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
        self._plans: dict[tuple[Any, ...], _ReadPlan] = {}
        self._names: dict[str, tuple[str, str]] = {}
        self._set_up(synchronous.upper())

    def _set_up(self, synchronous: str) -> None:
        """The file's settings and the meta table (several connections may open a new file
        at once: see :func:`~loopworks.metadata.database.use_wal`)."""
        # New files only. Bulk upserts write every page once to the WAL and once more at the
        # checkpoint, each write a system call and a checksum: 32 KiB pages took ~17% less
        # CPU than 8 KiB on the benchmark's 200,000 reviews; reads map the file (below), so
        # a lookup does not copy the larger page.
        use_wal(self._db, before=(f"PRAGMA page_size={_PAGE_BYTES}",))
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # Reads map the file instead of copying each page through read(): random lookups by
        # id (the serving path) then cost no system call. Writes still go through the WAL.
        self._db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
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
                self._plans.clear()
                raise
            self._db.execute("COMMIT")

    def _existing(self, group: str, refresh: bool = False) -> set[str]:
        if refresh or group not in self._columns:
            info = self._db.execute(f"PRAGMA table_info({_table(group)})").fetchall()
            self._columns[group] = {row[1] for row in info}
            self._plans.clear()
        return self._columns[group]

    def _ensure(self, group: str, definitions: list[FeatureDefinition], record_id: str,
                event_time: str) -> None:
        """Create the group's table, add new feature columns, record the key names."""
        check_feature_names(group, definitions)
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
              record_id: str, event_time: str, ttl_seconds: float | None = None,
              before_commit: Callable[[], object] | None = None) -> int:
        """Upsert-if-newer all rows in one transaction; see :meth:`OnlineStore.write`."""
        check_ttl(ttl_seconds)
        if table.num_rows == 0:
            return 0
        table, ids, times = latest_per_id(_by_id(table, record_id), record_id, event_time)
        columns = [self._sql_values(column_values(table, d, group), d) for d in definitions]
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
            if before_commit is not None:
                before_commit()
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
            plan = self._plan(group, definitions, features)
            if plan is None:
                return [None] * len(ids)
            try:
                now = time.time_ns() // 1000
                if len(ids) == 1:  # the serving path: one statement, one row
                    row = self._db.execute(plan.one, (ids[0], now)).fetchone()
                    return [None if row is None else plan.record(row)]
                found = self._fetch(plan, ids, now)
            except sqlite3.OperationalError:
                self._plans.clear()
                if self._existing(group, refresh=True):  # not dropped by another process
                    raise
                return [None] * len(ids)
        return assemble_records(plan.chosen, [found.get(i) for i in ids], 1, redis=False)

    def _plan(self, group: str, definitions: list[FeatureDefinition],
              features: Sequence[str] | None) -> _ReadPlan | None:
        """The statements and decoders of a read, cached per group, definitions and features.

        The cache holds the ``definitions`` list itself, so its ``id`` stays unique while
        cached; a plan made while a feature had no column yet is not reused (the column may
        have been added by another process since).
        """
        key = (group, id(definitions), None if features is None else tuple(features))
        plan = self._plans.get(key)
        if plan is not None and plan.definitions is definitions:
            return plan
        existing = self._existing(group)
        if not existing or any(d.name not in existing for d in definitions):
            existing = self._existing(group, refresh=True)
        if not existing:
            return None
        chosen = selected_features(definitions, features, self._key_names(group), group)
        plan = _ReadPlan(_table(group), definitions, chosen, existing)
        if plan.complete:
            if len(self._plans) >= 256:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _fetch(self, plan: _ReadPlan, ids: Sequence[str], now: int
               ) -> dict[str, tuple[Any, ...]]:
        found: dict[str, tuple[Any, ...]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _READ_CHUNK):
            chunk = unique[start:start + _READ_CHUNK]
            for row in self._db.execute(
                    f"{plan.many}({', '.join('?' * len(chunk))}) AND {_ALIVE}", (*chunk, now)):
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

    def expires_at(self, group: str, record_id: str) -> datetime | None:
        """When a live record's TTL runs out; see :meth:`OnlineStore.expires_at`."""
        with self._lock:
            if not self._existing(group):
                return None
            now = time.time_ns() // 1000
            row = self._db.execute(f"SELECT _lw_expires_at FROM {_table(group)} WHERE "
                                   f"_lw_id = ? AND {_ALIVE}", (record_id, now)).fetchone()
        if row is None or row[0] is None:
            return None
        return datetime.fromtimestamp(row[0] / 1e6, UTC)

    def delete(self, group: str, record_id: str, event_time: datetime, *, hard: bool,
               definitions: list[FeatureDefinition], record_id_name: str,
               event_time_name: str) -> bool:
        """Soft or hard delete as of ``event_time``; see :meth:`OnlineStore.delete`."""
        asked = to_micros(event_time)
        name = _table(group)
        with self._transaction() as db:
            self._ensure(group, definitions, record_id_name, event_time_name)
            now = time.time_ns() // 1000
            row = db.execute(f"SELECT _lw_event_time FROM {name} WHERE _lw_id = ? AND "
                             "(_lw_expires_at IS NULL OR _lw_expires_at > ?)",
                             (record_id, now)).fetchone()
            if row is not None and row[0] > asked:
                if hard:
                    raise version_conflict(group, record_id, row[0], asked)
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
            self._plans.clear()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
