"""The write journal: which writes to a feature group are in flight, and who owns them.

A write reaches the offline history (Delta commits) and the online store in separate
transactions. A process killed between the two (``kill -9``, a power cut) would leave the
stores disagreeing: rows offline that are never served or, for a delete (online first), a
record gone online that is still the latest offline. The journal makes every write finish
across crashes:

1. Before its first commit, a write creates ``<home>/journal/<group>/<id>.json`` naming the
   group, when it began, its TTL and its owner (written to a temporary file, synced, renamed
   into place, folder synced) and holds an exclusive ``flock`` on it for as long as it runs.
   The kernel drops the lock when the process dies, however it dies, so a lock that can be
   taken means a dead owner: exact on one host, no timeouts.
2. Each of its Delta commits carries its id and the batch's ``write_time`` in the commit
   metadata (``loopworks.ingest``, ``loopworks.write_time``).
3. Once every batch it committed offline is online too, or its commits were restored away,
   the write deletes its entry (still holding the lock, so no one mistakes it for a dead
   owner's).

An entry whose owner is dead is finished by the next open of the group
(:meth:`FeatureStore.feature_group <loopworks.featurestore.FeatureStore.feature_group>`, so
every command, the server and the SDK) before it serves: :meth:`IngestJournal.recover` runs
under a per-group lock, and the group rolls the write forward (see
:func:`rows_to_replay`): the rows of its commits still in the latest table version (a
RESTORE removes rolled-back ones; OPTIMIZE keeps rows and their ``write_time``) that are still
the latest offline record for their id are upserted online, with what remains of their TTL.
A later write or tombstone of an id is left alone, so nothing deleted comes back. Online
writes are upserts-if-newer, so rolling forward twice (recovery killed too) changes nothing.

Limits: the journal lives in the home folder, so processes sharing stores through different
homes, or on other hosts, do not recover each other's writes; POSIX ``flock`` only.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import reduce
from operator import or_
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from loopworks.errors import NotFoundError
from loopworks.featurestore.definitions import EVENT_TIME_TYPE
from loopworks.featurestore.registry import FeatureGroupSpec

__all__ = ["IngestJournal", "JournalEntry", "JournalRecord", "OfflineSpool", "commit_metadata",
           "committed_write_times", "pause_point", "rows_to_replay"]

INGEST_KEY = "loopworks.ingest"
WRITE_TIME_KEY = "loopworks.write_time"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STALE_TMP_SECONDS = 60.0
# Recovery reads commits back to this long before the write began (the clock may have been
# set back in between; reading a few commits too many costs little).
_CLOCK_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True)
class JournalRecord:
    """What a journal entry says about one write.

    Attributes:
        id: The write's id, also in the metadata of each of its Delta commits.
        group: Feature group name.
        created_at: When the write began (UTC, ISO 8601); its commits all come after. (Not
            the table version: reading it costs a log replay per write, tens of ms.)
        ttl_seconds: TTL of the records written online (``None``: forever).
        pid: Owner process id (for people reading the file; liveness is the lock).
        delete: For a delete, ``{"record_id", "event_time" (ISO 8601), "hard"}``.
    """

    id: str
    group: str
    created_at: str
    ttl_seconds: float | None = None
    pid: int = 0
    delete: dict[str, Any] | None = None


class JournalEntry:
    """A journal entry held by the write it describes (see :meth:`IngestJournal.begin`)."""

    def __init__(self, record: JournalRecord, path: Path, fd: int) -> None:
        self.record = record
        self.path = path
        self._fd: int | None = fd

    @property
    def id(self) -> str:
        """The write's id."""
        return self.record.id

    def close(self, *, done: bool) -> None:
        """Release the entry.

        Args:
            done: The write is settled (both stores hold its batches, or its commits were
                rolled back): delete the entry. ``False`` keeps it for the next open of the
                group to roll forward.
        """
        if self._fd is None:
            return
        try:
            if done:
                self.path.unlink(missing_ok=True)  # under the lock: never seen as orphaned
        finally:
            os.close(self._fd)
            self._fd = None


class IngestJournal:
    """Journal entries of the writes in flight, one folder per group under ``folder``.

    Args:
        folder: Where the entries live (``<home>/journal``); created on first write.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"IngestJournal({str(self.folder)!r})"

    def begin(self, group: str, *, ttl_seconds: float | None = None,
              delete: dict[str, Any] | None = None) -> JournalEntry:
        """Durably record a write about to start, and hold its lock until it is closed.

        The lock is taken on the temporary file before it is renamed into place, so the
        entry is never visible without a live owner's lock.

        Returns:
            The entry; close it with :meth:`JournalEntry.close` when the write is over.
        """
        folder = self.folder / group
        folder.mkdir(parents=True, exist_ok=True)
        record = JournalRecord(
            id=f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}", group=group,
            created_at=datetime.now(UTC).isoformat(), ttl_seconds=ttl_seconds,
            pid=os.getpid(), delete=delete)
        tmp, path = folder / f"{record.id}.tmp", folder / f"{record.id}.json"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps(asdict(record)).encode())
            os.fsync(fd)
            os.rename(tmp, path)
            _sync_folder(folder)
        except BaseException:
            tmp.unlink(missing_ok=True)
            os.close(fd)
            raise
        return JournalEntry(record, path, fd)

    def pending(self, group: str) -> list[str]:
        """Ids of the group's entries (live writes and orphans alike), oldest first."""
        try:
            names = os.listdir(self.folder / group)
        except FileNotFoundError:
            return []
        return sorted(n.removesuffix(".json") for n in names if n.endswith(".json"))

    def recover(self, group: str, finish: Callable[[JournalRecord], object]) -> int:
        """Finish the group's writes whose owner died, oldest first.

        Cheap when there is nothing to do (one folder listing). Otherwise runs under the
        group's recovery lock, so concurrent openers wait for one recovery instead of racing.
        An entry is deleted only after ``finish`` returned; if ``finish`` raises, the entry
        stays (the next open tries again) and the error propagates.

        Args:
            group: Feature group name.
            finish: Rolls one write forward; must be safe to repeat.

        Returns:
            How many writes were finished.
        """
        folder = self.folder / group
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        if not any(n.endswith((".json", ".tmp")) for n in names):
            return 0
        finished = 0
        with _locked(folder / ".recover.lock"):
            for name in sorted(os.listdir(folder)):
                if not name.endswith((".json", ".tmp")):
                    continue
                path = folder / name
                with _claim(path) as fd:
                    if fd is None:
                        continue  # a live owner, or finished meanwhile
                    if name.endswith(".tmp"):  # died before its first commit
                        if time.time() - os.fstat(fd).st_mtime > _STALE_TMP_SECONDS:
                            path.unlink(missing_ok=True)
                        continue
                    record = JournalRecord(**json.loads(_read_all(fd)))
                    finish(record)
                    path.unlink(missing_ok=True)
                    finished += 1
        return finished

    def forget(self, group: str) -> None:
        """Drop every entry of a group (the group is being deleted)."""
        shutil.rmtree(self.folder / group, ignore_errors=True)


def commit_metadata(ingest_id: str, write_time: datetime) -> dict[str, Any]:
    """The Delta commit metadata naming a journaled write and its batch's ``write_time``."""
    return {INGEST_KEY: ingest_id, WRITE_TIME_KEY: _micros(write_time)}


def committed_write_times(offline: Any, record: JournalRecord) -> list[int]:
    """``write_time`` (µs since the epoch) of every offline commit the write made, in order.

    Reads the table's commits newest first, in growing windows, back to the first one made
    before the write began (less a margin for clock changes).
    """
    since = datetime.fromisoformat(record.created_at) - _CLOCK_MARGIN
    limit = 16
    while True:
        try:
            commits = offline.history(record.group, limit=limit)
        except NotFoundError:
            return []
        oldest = commits[-1]["timestamp"] if commits else None
        if len(commits) < limit or oldest is None or oldest < since:
            break
        limit *= 4
    return [int(c["metadata"][WRITE_TIME_KEY]) for c in reversed(commits)
            if c["metadata"].get(INGEST_KEY) == record.id]


def rows_to_replay(offline: Any, spec: FeatureGroupSpec, record: JournalRecord,
                   now: datetime | None = None) -> Iterator[tuple[pa.Table, float | None]]:
    """What rolling a crashed write forward writes online, one table per committed batch.

    The rows of the write's commits still in the latest table version that are the latest
    offline record of their id (greatest event time, then write time, as in ``g_latest``)
    and not deleted; each table in the group's definitions, with what remains of the write's
    TTL (batches already expired are left out). Keys are read first, then one batch at a
    time, so memory holds one batch.

    Args:
        offline: The offline store.
        spec: The group's definitions.
        record: The journal entry of the write.
        now: The clock for the remaining TTL (default now).

    Yields:
        ``(table, ttl_seconds)`` per batch, in commit order.
    """
    times = committed_write_times(offline, record)
    if not times:
        return
    key, event = spec.record_id, spec.event_time
    columns = [key, event, "write_time", "is_deleted"]
    # Each batch's files hold one write_time, so file statistics skip every other file.
    batch_filters = {t: pc.field("write_time") == pa.scalar(t, EVENT_TIME_TYPE) for t in times}
    mine = offline.read(spec.name, columns=columns, filter=reduce(or_, batch_filters.values()))
    mine = mine.filter(pc.invert(mine.column("is_deleted")))
    if mine.num_rows == 0:
        return
    rivals = offline.read(spec.name, columns=columns,
                          filter=pc.field(key).isin(pc.unique(mine.column(key))))
    latest = _latest(rivals, key, event)
    kept: dict[int, list[str]] = {t: [] for t in times}
    for i, e, w in zip(mine.column(key).to_pylist(), _ints(mine.column(event)),
                       _ints(mine.column("write_time")), strict=True):
        if latest.get(i) == (e, w):
            kept[w].append(i)
    clock = _micros(now or datetime.now(UTC))
    for stamp, ids in kept.items():
        ttl = record.ttl_seconds
        if ttl is not None:
            ttl -= (clock - stamp) / 1e6
        if not ids or (ttl is not None and ttl <= 0):  # expired online by now anyway
            continue
        batch = offline.read(spec.name, filter=batch_filters[stamp] & ~pc.field("is_deleted")
                             & pc.field(key).isin(pa.array(ids, pa.string())))
        yield pa.table({d.name: batch.column(d.name).cast(d.arrow_type)
                        if d.name in batch.column_names
                        else pa.nulls(batch.num_rows, d.arrow_type)
                        for d in spec.definitions}), ttl


def pause_point(name: str) -> None:
    """Test hook: stop this process at a named point so a test can kill it there.

    With ``LOOPWORKS_PAUSE_AT=<name>:<n>`` set, the ``n``-th time (default the first) this
    process reaches point ``name`` it writes ``<name>:<n> <pid>`` to ``LOOPWORKS_PAUSE_FILE``
    (when set) and sleeps until killed (at most 10 minutes, then exits with status 70).
    Points (``put_record`` is a one-batch ingest): ``ingest.journal-written`` (before any
    commit), ``ingest.offline-committed`` (after a batch's Delta commit, before its online
    commit; on the offline writer thread), ``ingest.online-committed``,
    ``delete.online-applied`` (a delete applied online, its tombstone not yet offline) and
    ``recovery.online-written`` (recovery wrote a batch online, its entry not yet deleted).
    Unset, this costs one environment lookup.
    """
    wanted = os.environ.get("LOOPWORKS_PAUSE_AT")
    if not wanted or wanted.partition(":")[0] != name:
        return
    with _HITS_LOCK:
        _HITS[name] += 1
        hit = _HITS[name]
    if hit != int(wanted.partition(":")[2] or 1):
        return
    signal_file = os.environ.get("LOOPWORKS_PAUSE_FILE")
    if signal_file:
        Path(signal_file).write_text(f"{name}:{hit} {os.getpid()}\n")
    time.sleep(600)
    os._exit(70)


_HITS: Counter[str] = Counter()
_HITS_LOCK = threading.Lock()


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _ints(column: pa.ChunkedArray) -> list[int]:
    return column.cast(EVENT_TIME_TYPE).cast(pa.int64()).to_pylist()


def _latest(rows: pa.Table, key: str, event: str) -> dict[str, tuple[int, int]]:
    """Per id, (event time, write time) of its latest offline record, if not a tombstone."""
    order = pc.sort_indices(rows, [(key, "ascending"), (event, "descending"),
                                   ("write_time", "descending")])
    rows = rows.take(order)
    ids = rows.column(key).to_pylist()
    first = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]
    rows = rows.filter(pa.array(first, pa.bool_()))
    return {i: (e, w) for i, e, w, deleted in zip(
        rows.column(key).to_pylist(), _ints(rows.column(event)),
        _ints(rows.column("write_time")), rows.column("is_deleted").to_pylist(), strict=True)
        if not deleted}


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def _claim(path: Path) -> Iterator[int | None]:
    """The entry's descriptor, locked, if its owner is gone; ``None`` if alive or removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            yield None
            return
        # Locked, but the owner may have finished (unlinked it) between our open and lock.
        yield fd if os.fstat(fd).st_nlink > 0 else None
    finally:
        os.close(fd)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class OfflineSpool:
    """Records already online whose offline append comes later, as SageMaker's PutRecord
    does it: the online store answers at once and the history catches up within a moment.

    A deferred batch is written here durably (an Arrow file, synced, renamed into place)
    *before* it goes online, under ``<home>/journal/spool/<group>/``, named by its owner: a
    random id per process, whose ``owner-<id>.lock`` the process holds (``flock``) while it
    lives. The owner's flusher appends its batches to the history in one Delta commit per
    flush: it first moves them into ``flush-<id>/`` (the commit's id, in its metadata), so
    a flush cut short is finished exactly once: committed already (the id is in the
    history) means only the folder is left to remove. Batches whose owner died are finished
    by the next open of the group, which also writes them online again (upsert-if-newer:
    the owner may have died before its online write).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._owner_fds: dict[str, int] = {}
        self._guard = threading.Lock()

    def _own(self, group: str) -> Path:
        folder = self.folder / group
        with self._guard:
            if group not in self._owner_fds:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / f"owner-{self.owner}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._owner_fds[group] = fd
        return folder

    def add(self, group: str, table: pa.Table, ttl_seconds: float | None, *,
            online: bool = True) -> None:
        """Keep one batch durably until its offline append (``online``: it was also written
        online, so a recovery writes it online again)."""
        import pyarrow.ipc as ipc

        folder = self._own(group)
        name = f"{self.owner}.{time.time_ns():020d}-{secrets.token_hex(4)}"
        tmp = folder / f".{name}.tmp"
        meta = {b"loopworks.ttl": json.dumps(ttl_seconds).encode(),
                b"loopworks.online": b"true" if online else b"false"}
        with open(tmp, "wb") as fh:
            with ipc.new_file(fh, table.schema.with_metadata(meta)) as writer:
                writer.write_table(table)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, folder / f"{name}.arrow")
        _sync_folder(folder)

    def has_pending(self, group: str) -> bool:
        """Whether the group has batches not yet in the history (one folder listing)."""
        try:
            return any(n.endswith(".arrow") or n.startswith("flush-")
                       for n in os.listdir(self.folder / group))
        except FileNotFoundError:
            return False

    def groups(self) -> list[str]:
        """Groups with a spool folder."""
        try:
            return sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return []

    @staticmethod
    def read(path: Path) -> tuple[pa.Table, float | None, bool]:
        """A spooled batch, its TTL, and whether it was written online too."""
        import pyarrow.ipc as ipc

        with ipc.open_file(pa.memory_map(str(path))) as reader:
            table = reader.read_all()
        meta = table.schema.metadata or {}
        ttl = json.loads(meta.get(b"loopworks.ttl", b"null"))
        return (table.replace_schema_metadata(None), ttl,
                meta.get(b"loopworks.online", b"true") == b"true")

    @contextmanager
    def batches(self, group: str, *, mine_only: bool) -> Iterator[list[Path]]:
        """Under the group's spool lock: the batches to flush, oldest first. ``mine_only``:
        this process's own; else those whose owner is gone (it holds no lock)."""
        folder = self.folder / group
        if not folder.exists():
            yield []
            return
        with _locked(folder / ".flush.lock"):
            chosen = []
            for name in sorted(n for n in os.listdir(folder) if n.endswith(".arrow")):
                owner = name.split(".", 1)[0]
                if (owner == self.owner) if mine_only else self._dead(folder, owner):
                    chosen.append(folder / name)
            yield chosen

    def _dead(self, folder: Path, owner: str) -> bool:
        if owner == self.owner:
            return False
        lock = folder / f"owner-{owner}.lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        finally:
            os.close(fd)
        lock.unlink(missing_ok=True)
        return True

    def interrupted(self, group: str) -> list[Path]:
        """Flushes cut short (their folders), to finish under the spool lock."""
        folder = self.folder / group
        try:
            return sorted(folder / n for n in os.listdir(folder) if n.startswith("flush-"))
        except FileNotFoundError:
            return []

    def start_flush(self, group: str, paths: list[Path]) -> Path:
        """Move batches into a new flush folder (named by the commit to come)."""
        folder = self.folder / group
        flush = folder / f"flush-{time.time_ns():020d}-{secrets.token_hex(4)}"
        flush.mkdir()
        for path in paths:
            os.rename(path, flush / path.name)
        _sync_folder(flush)
        _sync_folder(folder)
        return flush

    def forget(self, group: str) -> None:
        """Drop a group's spool (the group is being deleted)."""
        with self._guard:
            fd = self._owner_fds.pop(group, None)
        if fd is not None:
            os.close(fd)
        shutil.rmtree(self.folder / group, ignore_errors=True)
