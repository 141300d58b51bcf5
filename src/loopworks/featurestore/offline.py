"""Offline store: the append-only history of each feature group as a Delta Lake table.

The table of group ``G`` lives at ``<root>/G`` (a local folder or an object-store URL such as
``s3://bucket/prefix``) and is partitioned by ``event_date``, the UTC date of the group's event
time. Every write is an ``append`` commit, so Delta time travel (``version=``) and the
``write_time`` column (``as_of=``) both show the history as it was.

List types. Delta has one array type and no fixed length, so delta-rs records
``fixed_size_list<int32>[128]`` as ``array<integer>`` in the table schema (the Parquet files it
appends still carry the fixed size in their embedded Arrow schema, but files rewritten by
``optimize`` do not). The store therefore keeps the fixed length as Delta *field metadata*
(``loopworks.list_size``), written with the column and preserved by every commit, and reads
the table through a dataset whose schema restores ``fixed_size_list``; Arrow casts each file's
lists to it on the fly. Variable lists (``list<int64>``) stay plain lists. Values are native
typed Parquet lists throughout, never JSON.

Concurrency. Two writers must never both commit version ``N``. On one host every writing
operation holds one lock per table: a thread lock shared by all stores in the process plus a
:class:`filelock.FileLock` under ``lock_dir`` for other processes. Writers on other hosts
(object stores) rely on the commit itself: delta-rs (1.x) writes ``_delta_log/N.json`` with
put-if-absent and, when ``N`` exists, checks the winner's commit for conflicts (appends never
conflict) and retries as ``N+1``.

On S3 the put-if-absent is a conditional write, set up and checked by
:func:`loopworks.featurestore.s3commits.s3_storage_options`.

Two races delta-rs leaves to its caller. A metadata change by another writer (creating the
table, adding a feature) makes it give up (``CommitFailedError``); nothing was committed, so
the append is written again on the new version. Two writers creating a table at once both
succeed, the loser's create landing as version 1: the append finds its own version by a
token in its commit metadata. :meth:`DeltaOfflineStore.history` reads the log entries
itself, as delta-rs' ``history`` numbers commits made during the call wrongly.

Parquet settings. Files are written with LZ4_RAW compression and without dictionary
encoding: on token-id lists and unique ids/texts the dictionary never pays off, and building
it (then falling back) took about half of the write time on the benchmark's reviews. Without
the dictionary, delta-rs' Snappy left those pages at 3x the size while LZ4_RAW keeps the
files as small as the defaults did. Arrow, DuckDB and Spark all read LZ4_RAW.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from loopworks.clock import as_utc
from loopworks.errors import (
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    ValidationError,
)
from loopworks.featurestore.definitions import EVENT_TIME_TYPE
from loopworks.featurestore.deltalog import commit_history
from loopworks.featurestore.s3commits import s3_storage_options
from loopworks.files import is_local, local_path

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from filelock import FileLock

__all__ = ["LIST_SIZE_KEY", "PARTITION_COLUMN", "DeltaOfflineStore", "s3_storage_options"]

PARTITION_COLUMN = "event_date"
LIST_SIZE_KEY = "loopworks.list_size"
_WRITE_TIME = "write_time"
_IS_DELETED = "is_deleted"
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")
#: Attempts of an append whose commit another writer's metadata change refused.
_COMMIT_ATTEMPTS = 5
#: Commit metadata key naming the append that created a table, and how far back to look.
_COMMIT_TOKEN = "loopworks.commit"
_CREATE_SEARCH = 32

# One lock per table for the whole process: stores sharing a root also share it.
_LOCKS: dict[str, tuple[threading.RLock, FileLock]] = {}
_LOCKS_GUARD = threading.Lock()


def _deltalake() -> Any:
    try:
        import deltalake
    except ImportError:
        raise MissingDependencyError("deltalake", "dev", "the offline store") from None
    return deltalake


def _writer_properties() -> Any:
    """Parquet writer settings of every append and compaction (see the module docstring)."""
    deltalake = _deltalake()
    return deltalake.WriterProperties(
        compression="LZ4_RAW",
        default_column_properties=deltalake.ColumnProperties(dictionary_enabled=False))


class DeltaOfflineStore:
    """Append-only feature group history in Delta Lake tables.

    Args:
        root: Local folder or object-store URL (``s3://bucket/prefix``, ``gs://...``,
            ``az://...``); the table of group ``G`` is ``<root>/G``.
        lock_dir: Local folder for the per-table writer lock files.
        storage_options: Options for delta-rs' object store (credentials, endpoint...). For
            ``s3://`` they are completed from the AWS environment and commits use S3
            conditional writes (see the module docstring).
    """

    def __init__(self, root: str, *, lock_dir: Path,
                 storage_options: dict[str, str] | None = None) -> None:
        root = str(root)
        self._remote = not is_local(root)
        self.root = root.rstrip("/") if self._remote else str(local_path(root).resolve())
        self.lock_dir = Path(lock_dir)
        self.storage_options = dict(storage_options) if storage_options else None
        #: Why commits here would not be safe (writes are refused), or ``None``.
        self.unsafe_writes: str | None = None
        if root.split("://", 1)[0].lower() in ("s3", "s3a"):
            self.storage_options, self.unsafe_writes = s3_storage_options(storage_options)

    def __repr__(self) -> str:
        return f"DeltaOfflineStore({self.root!r})"

    def uri(self, group: str) -> str:
        """Where the table of ``group`` lives (path or URL).

        Raises:
            ConfigurationError: The group name cannot be a folder name.
        """
        if not _GROUP_NAME.fullmatch(group or ""):
            raise ConfigurationError(
                f"feature group name {group!r} cannot name an offline table: use letters, "
                "digits, '_', '-', '.' and start with a letter or digit", feature_group=group)
        return f"{self.root}/{group}"

    # ------------------------------------------------------------------ writing
    def append(self, group: str, table: pa.Table, *, event_time: str) -> int:
        """Append rows to the group's history; see :meth:`append_versions`.

        Returns:
            The table version this append committed.
        """
        return self.append_versions(group, table, event_time=event_time)[1]

    def append_versions(self, group: str, table: pa.Table, *, event_time: str,
                        commit_metadata: dict[str, Any] | None = None
                        ) -> tuple[int | None, int]:
        """Append rows to the group's history (creating the table on first use).

        Args:
            group: Feature group name.
            table: Conformed feature columns in their canonical Arrow types plus
                ``write_time`` (timestamp[us, UTC]) and ``is_deleted`` (bool).
            event_time: Name of the event time column; its UTC date becomes the
                ``event_date`` partition.
            commit_metadata: Kept in the commit's ``commitInfo`` (keys ``loopworks.*``,
                JSON values); :meth:`history` shows them. The ingest journal names its
                writes this way.

        Returns:
            The version just before the append's commit (``None``: this append created the
            table) and the version the append committed. With writers on other hosts, a
            commit may land a few versions after the one read first (see the module
            docstring); the first is then the version right below it.

        Raises:
            ValidationError: A required column is missing or has the wrong type, or a column's
                type differs from the one already stored (names group and feature).
            ConflictError: Other writers kept changing the table's metadata (creating it,
                adding features) through every attempt; nothing was committed.
            ConfigurationError: The S3 commit setup is unsafe (:attr:`unsafe_writes`; also
                raised by :meth:`optimize` and :meth:`restore`).
        """
        from deltalake.exceptions import CommitFailedError

        from loopworks.errors import ConflictError

        data = self._prepare(group, table, event_time)
        with self._writer_lock(group):
            attempt = 1
            while True:
                try:
                    return self._append_once(group, data, commit_metadata)
                except CommitFailedError as exc:
                    # Another host changed the metadata (created the table, added a feature)
                    # between our read and our commit. Nothing of ours was committed: read
                    # the new version and write again.
                    if attempt == _COMMIT_ATTEMPTS:
                        raise ConflictError(
                            f"feature group {group!r}: the offline table kept changing under "
                            f"this append ({attempt} attempts, last: "
                            f"{str(exc).splitlines()[0]}); nothing was committed, try again",
                            feature_group=group) from None
                    attempt += 1

    def _append_once(self, group: str, data: pa.Table,
                     commit_metadata: dict[str, Any] | None) -> tuple[int | None, int]:
        """One attempt of :meth:`append_versions` (under the writer lock)."""
        deltalake = _deltalake()
        uri = self.uri(group)
        existing = self._open(uri)
        if existing is None:
            # Creating races with other hosts: delta-rs then commits our create on top of the
            # winner's as the next version. A token finds which version is ours.
            token = uuid.uuid4().hex
            deltalake.write_deltalake(
                uri, data, mode="append", partition_by=[PARTITION_COLUMN],
                storage_options=self.storage_options, writer_properties=_writer_properties(),
                commit_properties=deltalake.CommitProperties(
                    custom_metadata={**(commit_metadata or {}), _COMMIT_TOKEN: token}))
            version = next(int(c["version"]) for limit in (_CREATE_SEARCH, None)
                           for c in self.history(group, limit=limit)
                           if c["metadata"].get(_COMMIT_TOKEN) == token)
            return (None if version == 0 else version - 1), version
        stored = _canonical_schema(_arrow_schema(existing))
        for field in data.schema:
            if field.name in stored.names and stored.field(field.name).type != field.type:
                raise ValidationError(
                    f"feature group {group!r}: feature {field.name!r} is {field.type} in "
                    f"this batch but {stored.field(field.name).type} in the offline store",
                    feature_group=group, feature=field.name, row=None)
        # Added (or dropped) features evolve the schema; old rows read them as null.
        same = set(stored.names) == set(data.schema.names)
        deltalake.write_deltalake(
            existing, data, mode="append", schema_mode=None if same else "merge",
            writer_properties=_writer_properties(),
            commit_properties=deltalake.CommitProperties(custom_metadata=commit_metadata)
            if commit_metadata else None)
        version = int(existing.version())  # the table object now stands at our commit
        return version - 1, version

    def optimize(self, group: str) -> dict[str, Any]:
        """Compact small files (delta-rs ``optimize.compact``) under the writer lock.

        Old files are kept (no vacuum), so time travel to earlier versions keeps working.

        Returns:
            delta-rs' metrics (``numFilesAdded``, ``numFilesRemoved``, ...).

        Raises:
            NotFoundError: The group has no offline table.
        """
        with self._writer_lock(group):
            return dict(self._load(group).optimize.compact(
                writer_properties=_writer_properties()))

    def restore(self, group: str, version: int, *, expected_version: int | None = None) -> int:
        """Make ``version`` the current state again with a new RESTORE commit.

        Used to roll back an append whose online write failed. Restoring also undoes any
        commit made after ``version``; pass ``expected_version`` (the version the rolled-back
        append returned) to refuse when another writer has committed since.

        Returns:
            The new table version.

        Raises:
            NotFoundError: No table, or ``version`` does not exist (names the valid range).
            ConflictError: The table is no longer at ``expected_version``.
        """
        from loopworks.errors import ConflictError

        with self._writer_lock(group):
            table = self._load(group)
            latest = int(table.version())
            self._check_version(group, version, latest)
            if expected_version is not None and latest != expected_version:
                raise ConflictError(
                    f"feature group {group!r}: offline table is at version {latest}, not "
                    f"{expected_version}; another writer committed, not restoring",
                    feature_group=group, version=latest)
            table.restore(version)
            return int(table.version())

    def delete(self, group: str) -> None:
        """Remove the group's table and all its data (every version). No table: no-op."""
        uri = self.uri(group)
        with self._writer_lock(group, commits=False):
            if not self._remote:
                if Path(uri).exists():
                    shutil.rmtree(uri)
                return
            if self.exists(group):  # through delta-rs' own object store: same options
                from deltalake.fs import DeltaStorageHandler

                DeltaStorageHandler(uri, self.storage_options).delete_dir("")

    # ------------------------------------------------------------------ reading
    def exists(self, group: str) -> bool:
        """Whether the group has an offline table."""
        return bool(_deltalake().DeltaTable.is_deltatable(
            self.uri(group), storage_options=self.storage_options))

    def version(self, group: str) -> int | None:
        """The latest table version, or ``None`` when the group has no table."""
        table = self._open(self.uri(group))
        return None if table is None else int(table.version())

    def history(self, group: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first (like Delta's ``DESCRIBE HISTORY``).

        Args:
            group: Feature group name.
            limit: Only the latest ``limit`` commits.

        Returns:
            One dict per commit: ``version``, ``timestamp`` (UTC datetime), ``operation``
            (WRITE, OPTIMIZE, RESTORE...), ``rows_added`` (``None`` when not recorded), the
            raw ``metrics`` and ``metadata``, the ``loopworks.*`` keys the commit was made
            with (see :meth:`append_versions`).

        Raises:
            NotFoundError: The group has no offline table.
        """
        latest = int(self._load(group).version())
        return commit_history(self.uri(group), self.storage_options, latest, limit=limit,
                              remote=self._remote)

    def dataset(self, group: str, *, version: int | None = None,
                as_of: datetime | None = None) -> pads.Dataset:
        """The group's whole history as a lazy Arrow dataset in canonical types.

        Query it with DuckDB (``con.register("g", store.dataset("g"))``) or Arrow.

        Args:
            group: Feature group name.
            version: Delta time travel: the table as it was at this version.
            as_of: Only rows written at or before this time (``write_time <= as_of``; exact
                to the microsecond). A naive datetime is taken as UTC. Combines with
                ``version``.

        Raises:
            NotFoundError: The group has no offline table, or ``version`` does not exist
                (names the valid range).
        """
        table = self._load(group, version)
        schema = _canonical_schema(_arrow_schema(table))
        if self._remote or table.protocol().min_reader_version > 1:
            dataset = table.to_pyarrow_dataset(schema=schema)
        else:
            dataset = self._local_dataset(table, schema, self.uri(group))
        if as_of is not None:
            dataset = dataset.filter(pc.field(_WRITE_TIME) <= pa.scalar(as_utc(as_of),
                                                                       EVENT_TIME_TYPE))
        return dataset

    def read(self, group: str, *, version: int | None = None, as_of: datetime | None = None,
             columns: list[str] | None = None, filter: pc.Expression | None = None
             ) -> pa.Table:
        """Read the history into an Arrow table (canonical types, fixed-size lists restored).

        Args:
            group: Feature group name.
            version: See :meth:`dataset`.
            as_of: See :meth:`dataset`.
            columns: Only these columns.
            filter: A ``pyarrow.compute`` expression rows must satisfy.

        Raises:
            NotFoundError: See :meth:`dataset`.
        """
        return self.dataset(group, version=version, as_of=as_of).to_table(columns=columns,
                                                                          filter=filter)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _local_dataset(table: DeltaTable, schema: pa.Schema, folder: str) -> pads.Dataset:
        """The version's files read straight from local disk.

        delta-rs' own dataset reads through a Python file system wrapper, which on local
        disk took twice as long to build and to scan (the point-in-time join reads whole
        histories). Only tables without reader features (protocol reader version 1: no
        deletion vectors, no column mapping) come here, so the files and their
        ``event_date`` folder are all there is.
        """
        from urllib.parse import unquote

        from pyarrow import fs

        partitioning = pads.partitioning(
            pa.schema([schema.field(PARTITION_COLUMN)]), flavor="hive") \
            if PARTITION_COLUMN in schema.names else None
        files = [unquote(uri) for uri in table.file_uris()]  # the log's paths are URL-encoded
        return pads.dataset(files, schema=schema, format="parquet",
                            filesystem=fs.LocalFileSystem(), partitioning=partitioning,
                            partition_base_dir=folder)

    # ------------------------------------------------------------------ internals
    def _open(self, uri: str) -> DeltaTable | None:
        deltalake = _deltalake()
        from deltalake.exceptions import TableNotFoundError

        try:
            return deltalake.DeltaTable(uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def _load(self, group: str, version: int | None = None) -> DeltaTable:
        table = self._open(self.uri(group))
        if table is None:
            raise NotFoundError(f"feature group {group!r} has no offline data yet "
                                f"(no Delta table at {self.uri(group)})", feature_group=group)
        if version is None:
            return table
        latest = int(table.version())
        self._check_version(group, version, latest)
        if version != latest:
            from deltalake.exceptions import DeltaError

            try:
                table.load_as_version(version)
            except DeltaError as exc:  # e.g. its log entry was cleaned up
                raise NotFoundError(
                    f"feature group {group!r}: offline version {version} cannot be loaded "
                    f"({str(exc).splitlines()[0]}); the latest is {latest}",
                    feature_group=group, version=version, valid_range=[0, latest]) from None
        return table

    @staticmethod
    def _check_version(group: str, version: int, latest: int) -> None:
        if isinstance(version, bool) or not isinstance(version, int) \
                or not 0 <= version <= latest:
            raise NotFoundError(
                f"feature group {group!r}: offline version {version!r} does not exist; valid "
                f"versions are 0..{latest}",
                feature_group=group, version=version, valid_range=[0, latest])

    def _prepare(self, group: str, table: pa.Table, event_time: str) -> pa.Table:
        """Check the bookkeeping columns, add ``event_date`` and the list-size metadata."""
        if PARTITION_COLUMN in table.column_names:
            raise ValidationError(f"feature group {group!r}: {PARTITION_COLUMN!r} is reserved "
                                  "for the offline store's partition column",
                                  feature_group=group, feature=PARTITION_COLUMN, row=None)
        for name, check, expected in (
                (event_time, pa.types.is_timestamp, "a timestamp"),
                (_WRITE_TIME, lambda t: t == EVENT_TIME_TYPE, str(EVENT_TIME_TYPE)),
                (_IS_DELETED, pa.types.is_boolean, "bool")):
            if name not in table.column_names:
                raise ValidationError(f"feature group {group!r}: offline append needs column "
                                      f"{name!r}", feature_group=group, feature=name, row=None)
            if not check(table.schema.field(name).type):
                raise ValidationError(
                    f"feature group {group!r}: column {name!r} must be {expected}, got "
                    f"{table.schema.field(name).type}", feature_group=group, feature=name,
                    row=None)
        # The instant in UTC with its zone dropped, so the date is the UTC date.
        utc = table.column(event_time).cast(EVENT_TIME_TYPE).cast(pa.timestamp("us"))
        table = table.append_column(pa.field(PARTITION_COLUMN, pa.date32()),
                                    utc.cast(pa.date32()))
        fields = [field.with_metadata({LIST_SIZE_KEY: str(field.type.list_size)})
                  if pa.types.is_fixed_size_list(field.type) else field.remove_metadata()
                  for field in table.schema]
        return pa.Table.from_arrays(table.columns, schema=pa.schema(fields))

    @contextmanager
    def _writer_lock(self, group: str, *, commits: bool = True) -> Iterator[None]:
        if commits and self.unsafe_writes:
            raise ConfigurationError(
                f"feature group {group!r}: not writing the offline table at {self.uri(group)}: "
                f"{self.unsafe_writes}. loopworks commits to S3 only with conditional writes "
                "(If-None-Match: *), so that two writers never overwrite each other's commit; "
                "no safe setup is possible with these settings", feature_group=group,
                setting="offline_store_url")
        key = f"{self.root}/{group}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")[-100:]
        path = self.lock_dir / f"{name}-{digest}.lock"
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with _LOCKS_GUARD:
            if str(path) not in _LOCKS:
                from filelock import FileLock

                # thread_local=False: the RLock already admits one thread; the FileLock
                # counts re-entries of that thread.
                _LOCKS[str(path)] = (threading.RLock(), FileLock(path, thread_local=False))
            thread_lock, file_lock = _LOCKS[str(path)]
        with thread_lock, file_lock:
            yield


def _arrow_schema(table: DeltaTable) -> pa.Schema:
    return pa.schema(table.schema().to_arrow())


def _canonical_schema(schema: pa.Schema) -> pa.Schema:
    """The Delta table's Arrow schema with fixed-size lists restored from field metadata."""
    fields = []
    for field in schema:
        dtype = field.type
        if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
            size = (field.metadata or {}).get(LIST_SIZE_KEY.encode())
            dtype = pa.list_(dtype.value_type, int(size)) if size else pa.list_(dtype.value_type)
        fields.append(pa.field(field.name, dtype, field.nullable))
    return pa.schema(fields)
