"""A feature group: ingest, online reads and writes, deletes, history.

Every write goes to the offline history first (a Delta commit, the source of truth) and then
to the online store (one transaction). Should the online write fail, the offline commit is
rolled back by restoring the previous table version; should the process die between the two
commits, the write's journal entry (:mod:`loopworks.featurestore.journal`) has the next open
of the group roll it forward online before serving. So a batch lands in both stores or in
neither. Deletes go online first, then offline as a tombstone, journaled the same way.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.clock import as_utc, utcnow
from loopworks.errors import ConfigurationError, ConflictError, InputError
from loopworks.featurestore.definitions import (
    EVENT_TIME_TYPE,
    FeatureDefinition,
    conform_table,
    load_feature_definitions,
    to_arrow_table,
)
from loopworks.featurestore.journal import (
    JournalRecord,
    commit_metadata,
    committed_write_times,
    pause_point,
    rows_to_replay,
)
from loopworks.featurestore.registry import FeatureGroupSpec
from loopworks.files import read_table

if TYPE_CHECKING:
    from loopworks.featurestore.store import FeatureStore

__all__ = ["FeatureGroup", "IngestReport", "load_table"]

log = logging.getLogger(__name__)

_BATCH_ROWS = 50_000


@dataclass
class IngestReport:
    """What an ingest did."""

    rows: int
    batches: int
    online_written: int
    offline_version: int | None
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Ingest throughput."""
        return self.rows / self.seconds if self.seconds else 0.0



class FeatureGroup:
    """Handle on one feature group of a :class:`~loopworks.featurestore.FeatureStore`."""

    def __init__(self, store: FeatureStore, spec: FeatureGroupSpec) -> None:
        self._store = store
        self.spec = spec

    @property
    def name(self) -> str:
        """The group's name (its SQL table name too)."""
        return self.spec.name

    def __repr__(self) -> str:
        return f"FeatureGroup({self.name!r}, features={len(self.spec.definitions)})"

    # ----------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        """Definitions, tags and transformation metadata plus offline table figures."""
        info = self.spec.to_dict()
        offline = self._store.offline
        version = offline.version(self.name) if offline.exists(self.name) else None
        info["offline"] = {"version": version, "uri": offline.uri(self.name)
                           if hasattr(offline, "uri") else None}
        if version is not None:
            dataset = offline.dataset(self.name)
            info["offline"]["rows"] = dataset.count_rows()
            write_times = dataset.to_table(columns=["write_time"]).column("write_time")
            last = pc.max(write_times).as_py() if len(write_times) else None
            info["offline"]["last_write"] = last.isoformat() if last else None
        return info

    def add_features(self, definitions: Sequence[FeatureDefinition] | pd.DataFrame | pa.Table
                     ) -> FeatureGroup:
        """Add new features (update). Existing records read them as null."""
        if isinstance(definitions, pd.DataFrame | pa.Table):
            definitions = load_feature_definitions(definitions)
        current = {d.name for d in self.spec.definitions}
        added = [d for d in definitions if d.name not in current]
        if not added:
            raise ConfigurationError(f"feature group {self.name!r}: no new features to add",
                                     feature_group=self.name)
        self.spec.definitions = [*self.spec.definitions, *added]
        self._store.registry.update(self.spec)
        self._store.forget_spec(self.name)
        return self

    # ---------------------------------------------------------------------- ingest
    def ingest(self, data: pd.DataFrame | pa.Table | str, *, workers: int = 1,
               batch_rows: int = _BATCH_ROWS, ttl_seconds: float | None = None) -> IngestReport:
        """Validate and write records to the offline history and the online store.

        Args:
            data: DataFrame, Arrow table, or a Parquet/CSV/JSON Lines file or folder.
            workers: Threads validating and converting batches in parallel (writes to one
                table are serialized by the store's lock).
            batch_rows: Rows per batch; each batch lands atomically in both stores.
            ttl_seconds: Serve these records online for this long after writing (default:
                the group's TTL; ``None`` for both means forever).

        Returns:
            An :class:`IngestReport`.

        Raises:
            ValidationError: A row does not match the definitions (names the row within the
                whole input and the feature). No batch is written when any is invalid.
        """
        start = time.perf_counter()
        table = self._from_pandas(data) if isinstance(data, pd.DataFrame) else load_table(data)
        batches = [table.slice(i, batch_rows) for i in range(0, table.num_rows, batch_rows)]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            conformed = list(pool.map(self._conform_batch, batches,
                                      range(0, table.num_rows, batch_rows)))
        written, version = self._write_batches(conformed, ttl_seconds)
        return IngestReport(table.num_rows, len(conformed), written, version,
                            time.perf_counter() - start)

    def _from_pandas(self, frame: pd.DataFrame) -> pa.Table:
        """DataFrame to Arrow; a value of the wrong type fails naming its row and feature."""
        from loopworks.errors import ValidationError

        try:
            return pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        for name in frame.columns:  # error path only: find the offending value
            try:
                pa.array(frame[name], from_pandas=True)
                continue
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
            values = frame[name].tolist()
            kinds = pd.Series([type(v).__name__ for v in values if v is not None])
            common = kinds.mode().iloc[0] if len(kinds) else "value"
            for row, value in enumerate(values):
                if value is not None and type(value).__name__ != common:
                    raise ValidationError(
                        f"feature group {self.name!r}: row {row}: feature {name!r} holds "
                        f"{value!r} ({type(value).__name__}) among {common} values",
                        feature_group=self.name, row=row, feature=str(name))
        return pa.Table.from_pandas(frame, preserve_index=False)

    def _conform_batch(self, batch: pa.Table, offset: int = 0) -> pa.Table:
        from loopworks.errors import ValidationError

        try:
            return conform_table(batch, self.spec.definitions, record_id=self.spec.record_id,
                                 event_time=self.spec.event_time, group=self.name)
        except ValidationError as exc:
            row = exc.fields.get("row")
            if row is None or offset == 0:
                raise
            message = str(exc).replace(f": row {row}:", f": row {row + offset}:", 1)
            raise ValidationError(message, **(exc.fields | {"row": row + offset})) from None

    def _append_offline(self, table: pa.Table, *, ingest_id: str, deleted: bool = False
                        ) -> tuple[int | None, int]:
        """Append to the history as part of write ``ingest_id`` (named in the commit's
        metadata with the batch's write_time); returns (version before, version after)."""
        now = utcnow()
        history = table.append_column("write_time", pa.repeat(
            pa.scalar(now, EVENT_TIME_TYPE), table.num_rows)).append_column(
            "is_deleted", pa.repeat(pa.scalar(deleted), table.num_rows))
        return self._store.offline.append_versions(
            self.name, history, event_time=self.spec.event_time,
            commit_metadata=commit_metadata(ingest_id, now))

    def _write_batches(self, batches: list[pa.Table], ttl_seconds: float | None
                       ) -> tuple[int, int | None]:
        """Write batches to both stores, the offline and online writes of a batch overlapping.

        The offline commits run in order on one thread (queued up front, so the next one
        starts as soon as the previous is done) while this thread writes each batch online;
        the online transaction commits only after its batch's offline commit succeeded (the
        online store's ``before_commit`` hook). If an offline commit fails, its online
        transaction rolls back; if an online write fails, the history is restored to the
        version before that batch (which also undoes any later batch's commit, whose online
        write never happened). So every batch lands in both stores or in neither.

        A journal entry covers the whole call: should the process die between a batch's two
        commits, the next open of the group writes the batch online (see :meth:`recover`).
        The entry is dropped once the outcome is settled, and kept when even the restore
        failed, so those batches are rolled forward instead.
        """
        ttl = ttl_seconds if ttl_seconds is not None else self.spec.ttl_seconds
        batches = [b for b in batches if b.num_rows]
        if not batches:
            offline = self._store.offline
            return 0, offline.version(self.name) if offline.exists(self.name) else None
        written = 0
        version: int | None = None
        stop = threading.Event()  # set on failure: queued offline commits do nothing
        entry = self._store.journal.begin(self.name, ttl_seconds=ttl)
        settled = False

        def append(batch: pa.Table) -> tuple[int | None, int]:
            if stop.is_set():
                raise CancelledError
            try:
                result = self._append_offline(batch, ingest_id=entry.id)
            except BaseException:
                stop.set()
                raise
            pause_point("ingest.offline-committed")
            return result

        try:
            pause_point("ingest.journal-written")
            with ThreadPoolExecutor(max_workers=1) as offline_writer:
                commits = [offline_writer.submit(append, batch) for batch in batches]
                for k, batch in enumerate(batches):
                    try:
                        written += self._store.online.write(
                            self.name, batch, self.spec.definitions,
                            record_id=self.spec.record_id, event_time=self.spec.event_time,
                            ttl_seconds=ttl, before_commit=commits[k].result)
                    except BaseException:
                        stop.set()
                        self._undo_offline(commits[k:])
                        settled = True
                        raise
                    pause_point("ingest.online-committed")
                    version = commits[k].result()[1]
            settled = True
        finally:
            entry.close(done=settled)
        return written, version

    def _undo_offline(self, commits: list[Future[tuple[int | None, int]]]) -> None:
        """Restore the history to before the first of these commits that succeeded."""
        for commit in commits:
            commit.cancel()  # only those not started yet
        done = [c for c in commits if not c.cancelled() and c.exception() is None]  # waits
        if not done:
            return
        # After every running commit finished: a restore undoes all of them, and only them
        # (refused when another writer, another machine's, has committed since).
        try:
            self._restore_offline(done[0].result()[0], expected=done[-1].result()[1])
        except ConflictError as exc:
            log.error("feature group %r: the offline history keeps versions %d-%d of a write "
                      "whose online part failed, as %s", self.name, done[0].result()[1],
                      done[-1].result()[1], exc)

    def _restore_offline(self, before: int | None, *, expected: int | None = None) -> None:
        offline = self._store.offline
        if before is None:
            latest = offline.version(self.name)
            if expected is not None and latest is not None and latest != expected:
                raise ConflictError(f"feature group {self.name!r}: offline table is at "
                                    f"version {latest}, not {expected}; another writer "
                                    "committed, not deleting it", feature_group=self.name)
            offline.delete(self.name)
        else:
            offline.restore(self.name, before, expected_version=expected)

    # ---------------------------------------------------------------- online reads
    def get_record(self, record_id: str, features: Sequence[str] | None = None
                   ) -> dict[str, Any] | None:
        """The latest record for an id, or ``None`` (missing, deleted or expired)."""
        return self.batch_get_record([record_id], features)[0]

    def batch_get_record(self, record_ids: Sequence[str], features: Sequence[str] | None = None
                         ) -> list[dict[str, Any] | None]:
        """Latest records for many ids, in order (``None`` where there is none)."""
        if features:
            for name in features:
                self.spec.definition(name)
        return self._store.online.read(self.name, [str(i) for i in record_ids],
                                       self.spec.definitions, features)

    def expires_at(self, record_id: str) -> datetime | None:
        """When the live record's TTL runs out (UTC); None without a TTL or a record."""
        return self._store.online.expires_at(self.name, str(record_id))

    # --------------------------------------------------------------- online writes
    def put_record(self, record: dict[str, Any], *, ttl_seconds: float | None = None,
                   offline_later: bool = False, online: bool = True,
                   offline: bool = True) -> bool:
        """Write one record (validated). Returns False when a newer one is stored.

        ``ttl_seconds`` overrides the group's TTL for this record. With ``offline_later``
        the call returns once the record is online and kept durably for the history, which
        takes it within a moment (:class:`~loopworks.featurestore.journal.OfflineSpool`):
        SageMaker's PutRecord semantics, and many times the throughput. ``online=False`` or
        ``offline=False`` (with ``offline_later``) leaves that store out, as PutRecord's
        TargetStores do.
        """
        if not (online or offline):
            raise InputError("a record must go to the online store, the offline store or both")
        # Concurrent single-record writes to this group share one write (group commit).
        if offline_later or not (online and offline):
            return self._store.record_batcher.put(
                (self.name, ttl_seconds, "later", online, offline), record,
                lambda records: self._checked(records, lambda tables: self._write_later(
                    tables, ttl_seconds, online=online, offline=offline)))
        return self._store.record_batcher.put(
            (self.name, ttl_seconds), record,
            lambda records: self._checked(records, lambda tables: self._write_records(
                tables, ttl_seconds)))

    def _checked(self, records: list[dict[str, Any]],
                 write: Callable[[list[pa.Table]], list[bool]]) -> list[bool | BaseException]:
        """Check and convert single records, all at once when they are all good (the usual
        case), one by one otherwise, and write the good ones; a bad record's slot holds its
        error."""
        from loopworks.errors import ValidationError

        if all(r.keys() == records[0].keys() for r in records):  # Arrow takes the first's keys
            try:
                whole = self._conform_batch(pa.Table.from_pylist(records))
            except (ValidationError, pa.ArrowInvalid, pa.ArrowTypeError):
                if len(records) == 1:
                    raise
            else:
                results: list[bool | BaseException] = list(
                    write([whole.slice(i, 1) for i in range(len(records))]))
                return results
        checked: list[pa.Table | BaseException] = []
        for record in records:
            try:
                checked.append(self._conform_batch(pa.Table.from_pylist([record])))
            except (ValidationError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                checked.append(exc)
        good = [t for t in checked if isinstance(t, pa.Table)]
        written = iter(write(good) if good else [])
        return [next(written) if isinstance(t, pa.Table) else t for t in checked]

    def _write_later(self, tables: list[pa.Table], ttl_seconds: float | None, *,
                     online: bool = True, offline: bool = True) -> list[bool]:
        """Spool single records (durably), write them online, and have the history take
        them on the next flush (either store may be left out)."""
        batch = pa.concat_tables(tables)
        ttl = ttl_seconds if ttl_seconds is not None else self.spec.ttl_seconds
        if offline:
            self._store.spool.add(self.name, batch, ttl, online=online)
        if not online:
            self._store.flush_soon(self.name)
            return [True] * len(tables)
        written = self._store.online.write(self.name, batch, self.spec.definitions,
                                           record_id=self.spec.record_id,
                                           event_time=self.spec.event_time, ttl_seconds=ttl)
        if offline:
            self._store.flush_soon(self.name)
        return self._stored(tables, written)

    def flush_spool(self, *, mine_only: bool = True) -> int:
        """Append spooled records to the history in one commit: this process's own, or
        (``mine_only=False``, at open) those of dead processes, which are also written
        online again. Flushes cut short are finished first. Returns the records appended."""
        spool = self._store.spool
        appended = 0
        with spool.batches(self.name, mine_only=mine_only) as paths:
            for flush in spool.interrupted(self.name):
                appended += self._finish_flush(flush, sorted(flush.glob("*.arrow")),
                                               online=True)
            if paths:
                flush = spool.start_flush(self.name, paths)
                appended += self._finish_flush(flush, [flush / p.name for p in paths],
                                               online=not mine_only)
        return appended

    def _finish_flush(self, flush: Path, paths: list[Path], *, online: bool) -> int:
        from loopworks.featurestore.journal import JournalRecord, OfflineSpool

        batches = [OfflineSpool.read(p) for p in paths]
        rows = 0
        if batches:
            if online:
                for table, ttl, was_online in batches:
                    if not was_online:
                        continue
                    self._store.online.write(self.name, table, self.spec.definitions,
                                             record_id=self.spec.record_id,
                                             event_time=self.spec.event_time, ttl_seconds=ttl)
            began = datetime.fromtimestamp(flush.stat().st_mtime, UTC).isoformat()
            record = JournalRecord(id=flush.name, group=self.name, created_at=began)
            if not committed_write_times(self._store.offline, record):
                table = self._conform_batch(pa.concat_tables([b[0] for b in batches]))
                self._append_offline(table, ingest_id=flush.name)
                rows = table.num_rows
            pause_point("spool.offline-committed")
        shutil.rmtree(flush, ignore_errors=True)
        return rows

    def _write_records(self, tables: list[pa.Table], ttl_seconds: float | None) -> list[bool]:
        """Write single records as one batch; per record, whether it is the one stored."""
        written, _ = self._write_batches([pa.concat_tables(tables)], ttl_seconds)
        return self._stored(tables, written)

    def _stored(self, tables: list[pa.Table], written: int) -> list[bool]:
        """Per single-record table, whether it is the record stored now (False: a newer
        one was); ``written`` rows of the batch went online."""
        if written == len(tables):
            return [True] * len(tables)
        ids = [str(t.column(self.spec.record_id)[0].as_py()) for t in tables]
        stored = self.batch_get_record(ids, [self.spec.event_time])
        return [record is not None and record[self.spec.event_time] is not None
                and as_utc(record[self.spec.event_time])
                <= as_utc(t.column(self.spec.event_time)[0].as_py())
                for t, record in zip(tables, stored, strict=True)]

    def delete_record(self, record_id: str, event_time: datetime | str | None = None, *,
                      hard: bool = False, online: bool = True, offline: bool = True) -> bool:
        """Delete a record as of ``event_time`` (default now).

        Soft: no longer served online; hard: gone online. Both append an ``is_deleted``
        tombstone to the offline history. A delete older than the stored record is refused
        (hard: ConflictError) or kept offline only (soft: returns False). ``online=False``
        or ``offline=False`` leaves that store as it is (DeleteRecord's TargetStores).
        """
        if not (online or offline):
            raise InputError("a delete must reach the online store, the offline store or both")
        when = as_utc(event_time) if event_time is not None else utcnow()
        if not offline:
            return self._delete_online(str(record_id), when, hard=hard)
        entry = self._store.journal.begin(
            self.name,
            delete={"record_id": str(record_id), "event_time": when.isoformat(), "hard": hard,
                    "online": online})
        settled = True  # until the online delete is applied, nothing is written anywhere
        try:
            accepted = self._delete_online(str(record_id), when, hard=hard) if online else True
            settled = False  # kept if the tombstone fails: the next open commits it
            pause_point("delete.online-applied")
            self._append_tombstone(str(record_id), when, ingest_id=entry.id)
            settled = True
        finally:
            entry.close(done=settled)
        return accepted

    def _delete_online(self, record_id: str, when: datetime, *, hard: bool) -> bool:
        """The online half of a delete, first: the online store decides if it is accepted."""
        return bool(self._store.online.delete(
            self.name, record_id, when, hard=hard, definitions=self.spec.definitions,
            record_id_name=self.spec.record_id, event_time_name=self.spec.event_time))

    def _append_tombstone(self, record_id: str, when: datetime, *, ingest_id: str) -> None:
        tombstone = pa.Table.from_pylist([{self.spec.record_id: record_id,
                                           self.spec.event_time: when}])
        self._append_offline(self._conform_batch(tombstone), ingest_id=ingest_id, deleted=True)

    # -------------------------------------------------------------------- recovery
    def recover(self) -> int:
        """Finish this group's writes that a process died in the middle of.

        Each write is journaled (:mod:`loopworks.featurestore.journal`). One whose process
        is gone is rolled forward: the rows it committed offline that are still the latest
        offline record of their id are written online (upsert-if-newer, with what remains of
        their TTL); an interrupted delete is applied again and its tombstone committed.
        Writes of live processes are left to them. :meth:`FeatureStore.feature_group` calls
        this whenever it (re)reads the group's definition, so every command, the server and
        the SDK recover before serving; when there is nothing to do it costs one folder
        listing.

        Returns:
            How many interrupted writes were finished.

        Raises:
            LoopworksError: A store failed while rolling forward; the journal entry is kept
                and the next open tries again.
        """
        finished = self._store.journal.recover(self.name, self._finish)
        if self._store.spool.has_pending(self.name):
            finished += self.flush_spool(mine_only=False)
        return finished

    def _finish(self, record: JournalRecord) -> None:
        """Roll one interrupted write forward; repeating it changes nothing."""
        offline = self._store.offline
        if record.delete is not None:
            if committed_write_times(offline, record):
                return  # the tombstone is committed, so the online delete happened before
            record_id, when = record.delete["record_id"], as_utc(record.delete["event_time"])
            try:
                if record.delete.get("online", True):
                    self._delete_online(record_id, when, hard=bool(record.delete["hard"]))
            except ConflictError:
                return  # a newer record is stored by now: it is the latest in both stores
            self._append_tombstone(record_id, when, ingest_id=record.id)
            return
        for table, ttl in rows_to_replay(offline, self.spec, record):
            self._store.online.write(self.name, table, self.spec.definitions,
                                     record_id=self.spec.record_id,
                                     event_time=self.spec.event_time, ttl_seconds=ttl)
            pause_point("recovery.online-written")

    # --------------------------------------------------------------------- offline
    def history(self, *, version: int | None = None, as_of: datetime | str | None = None
                ) -> pa.Table:
        """The offline history (every write, with write_time and is_deleted)."""
        return self._store.offline.read(self.name, version=version,
                                        as_of=as_utc(as_of) if as_of is not None else None)

    def versions(self) -> list[dict[str, Any]]:
        """Offline table versions (Delta history), newest first."""
        return self._store.offline.history(self.name)

    def optimize(self) -> dict[str, Any]:
        """Compact the offline table's small files."""
        return self._store.offline.optimize(self.name)


def load_table(data: pd.DataFrame | pa.Table | str) -> pa.Table:
    """What ingest takes, as one Arrow table: a DataFrame, an Arrow table or batch, or a
    Parquet/CSV/JSON Lines file, folder or glob."""
    if isinstance(data, str):
        return read_table(data)
    if isinstance(data, pd.DataFrame | pa.Table | pa.RecordBatch):
        return to_arrow_table(data)
    raise InputError(f"cannot ingest {type(data).__name__}; pass a DataFrame, Arrow table or "
                     "a file/folder path")
