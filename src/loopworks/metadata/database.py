"""Opening the metadata database from a URL, with the driver imported only when used."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any

from loopworks.errors import ConfigurationError, InputError, MissingDependencyError
from loopworks.settings import load_settings

__all__ = ["READ_ONLY", "WAL_LIMIT_BYTES", "BackgroundCheckpointer", "build_engine", "database_url",
           "dispose_engine", "open_engine", "use_wal"]

#: Execution options for a connection that only reads: on SQLite it then reads its WAL
#: snapshot without taking the write lock (``engine.connect().execution_options(**READ_ONLY)``).
READ_ONLY = {"loopworks_read_only": True}

_ENGINES: dict[str, Any] = {}
_OPENING = threading.RLock()
#: A SQLite WAL past this size is checkpointed with TRUNCATE by a server's checkpointer, and
#: what a WAL reset leaves on disk is cut to it (``journal_size_limit``).
WAL_LIMIT_BYTES = 64 * 1024 * 1024


@atexit.register
def _dispose_all() -> None:
    for url in list(_ENGINES):
        dispose_engine(url)


def database_url(home: Path, url: str | None = None) -> str:
    """The metadata database URL: ``url``, else the ``database_url`` setting of ``home``
    (``LOOPWORKS_DATABASE_URL`` or its ``config.toml``), else SQLite in ``home``.

    Raises:
        ConfigurationError: The home's settings are invalid.
    """
    if not url:
        url = load_settings(home=home).database_url
    if url:
        return url
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'loopworks.db'}"


def open_engine(url: str) -> Any:
    """A SQLAlchemy engine for ``url`` (cached per URL).

    The first open in a process brings the database to this release's schema
    (:func:`loopworks.metadata.schema.ensure_schema`).

    Raises:
        MissingDependencyError: The driver for the URL's database is not installed.
        ConfigurationError: The URL names a database loopworks does not support.
        SchemaTooNew: A newer loopworks upgraded the database.
    """
    with _OPENING:  # threads opening the same URL at once get one engine, migrated once
        key = url
        if key in _ENGINES:
            path = url.removeprefix("sqlite:///")
            if url.startswith("sqlite:///") and path != ":memory:" and not os.path.exists(path):
                dispose_engine(key)  # the file was deleted under us: start a fresh database
            else:
                return _ENGINES[key]
        engine = build_engine(url)
        from loopworks.metadata.schema import ensure_schema

        try:
            ensure_schema(engine)  # new: created; older: upgraded; newer: refused (SchemaTooNew)
        except BaseException:
            engine.dispose()
            raise
        _ENGINES[key] = engine
        return engine


def build_engine(url: str) -> Any:
    """A new, uncached engine for ``url`` with loopworks' connection settings, and no
    schema check (``loopworks db status`` reads a database without upgrading it).

    Raises:
        MissingDependencyError: The driver for the URL's database is not installed.
        ConfigurationError: The URL names a database loopworks does not support.
    """
    try:
        import sqlalchemy as sa
    except ImportError:
        raise MissingDependencyError("sqlalchemy", "postgres", "the metadata database") from None
    if url.startswith("sqlite"):
        # A pool as large as the server's busy threads: a connection opened past the pool is
        # closed again on return, and opening one (its pragmas included) costs more than
        # most of the statements it runs.
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  pool_size=16, max_overflow=32)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            use_wal(dbapi_connection)
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            dbapi_connection.isolation_level = None  # transactions begin below, not in pysqlite

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Take the write lock up front: a read-then-write transaction (leasing a task)
            # would otherwise fail to upgrade its lock under concurrency instead of waiting.
            # Connections marked read-only (``READ_ONLY``) read a WAL snapshot without it.
            if conn.get_execution_options().get("loopworks_read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif url.startswith(("postgresql", "postgres")):
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MissingDependencyError("psycopg", "postgres",
                                         "a PostgreSQL metadata database") from None
        # A pool as large as the server's busy threads, as on SQLite: past the pool each
        # request would open a connection (a new server process on PostgreSQL's side) and
        # close it again. 32 per process at most: two server processes stay well inside
        # PostgreSQL's default 100 connections (more processes: a pooler such as PgBouncer).
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=16, max_overflow=16)
    else:
        raise ConfigurationError(
            f"unsupported database URL {url.split(':', 1)[0]}://...; use sqlite:///PATH or "
            "postgresql://USER@HOST/DB",
            setting="LOOPWORKS_DATABASE_URL")
    sa.event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


def use_wal(connection: Any, *, timeout: float = 30.0,
            before: tuple[str, ...] = ()) -> None:
    """Put a sqlite3 connection's database in WAL mode (running the ``before`` pragmas
    first, e.g. a new file's page size).

    Switching a new file to WAL takes an exclusive lock SQLite does not wait for (the busy
    handler is not called): when another connection opens the same new file at that moment
    it fails at once with "database is locked". Tried again here for up to ``timeout``
    seconds, so servers' threads and processes may open a new database together.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            for pragma in before:
                connection.execute(pragma)
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _refuse_nul(_conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any,
                executemany: bool) -> None:
    """PostgreSQL text cannot hold a NUL character: psycopg fails on one, whether it is
    stored (a task's text) or looked up (a job name in a URL). Refuse it before the driver
    sees it, on SQLite too, so both backends answer alike.

    Raises:
        InputError: A text parameter holds ``\\x00``.
    """
    for row in parameters if executemany else (parameters,):
        values = row.values() if isinstance(row, dict) else row or ()
        if any(isinstance(value, str) and "\x00" in value for value in values):
            raise InputError("text with a NUL character (\\x00) cannot be stored in or looked "
                             "up from the metadata database; remove the character")


def dispose_engine(url: str) -> None:
    """Close every pooled connection of the engine opened for ``url`` and forget it."""
    engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()


class BackgroundCheckpointer:
    """Moves a long-running server's SQLite WAL into the database file from a thread of its
    own, instead of inside whichever request's commit crosses SQLite's 1,000-page mark, and
    keeps the WAL from growing without bound.

    That commit would otherwise do the copy (and its fsync) while the request still holds
    the write lock, and every other request would wait behind it: the slowest 1% of
    answers. A PASSIVE checkpoint never blocks writers or readers, but it cannot reset the
    WAL while readers keep using it, so under steady load the file only grows (251 MiB
    beside a 16 MB database after 75 s). So when the WAL passes ``wal_limit_bytes``, or the
    database has been quiet for ``quiet_seconds``, a TRUNCATE checkpoint waits briefly
    (``busy_ms``) for readers to move on and cuts the file to nothing; should readers stay,
    it gives up and tries again next tick. ``journal_size_limit`` caps what a reset leaves
    on disk. Nothing changes for PostgreSQL or for short-lived CLI processes (they keep
    SQLite's automatic checkpoints).
    """

    def __init__(self, engine: Any, every_seconds: float = 1.0, *,
                 wal_limit_bytes: int = WAL_LIMIT_BYTES, quiet_seconds: float = 10.0,
                 busy_ms: int = 200) -> None:
        import threading

        import sqlalchemy as sa

        self.engine = engine
        self.every = every_seconds
        self.wal_limit_bytes = wal_limit_bytes
        self.quiet_seconds = quiet_seconds
        self.busy_ms = busy_ms
        self.truncations = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._last_size = -1
        self._quiet_since = 0.0
        if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
            return
        self.path = Path(engine.url.database)
        sa.event.listen(engine, "connect", _no_autocheckpoint)
        engine.dispose()  # pooled connections reopen with the setting above
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def wal_bytes(self) -> int | None:
        """The WAL file's size now (None when this is not a SQLite file database)."""
        if self._thread is None and self._connection is None:
            return None
        try:
            return os.path.getsize(f"{self.path}-wal")
        except OSError:
            return 0

    def run_once(self) -> None:
        """One tick: a PASSIVE checkpoint, then a TRUNCATE one when the WAL is past its
        limit or has not changed for ``quiet_seconds``."""
        import sqlite3
        import time

        if self._connection is None:
            self._connection = sqlite3.connect(self.path, timeout=self.busy_ms / 1000,
                                               check_same_thread=False)
        connection = self._connection
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        size = self.wal_bytes() or 0
        now = time.monotonic()
        if size != self._last_size:
            self._last_size, self._quiet_since = size, now
        quiet = size > 0 and now - self._quiet_since >= self.quiet_seconds
        if size > self.wal_limit_bytes or quiet:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                self.truncations += 1
                self._last_size = self.wal_bytes() or 0

    def _run(self) -> None:
        import sqlite3

        try:
            while not self._stop.wait(self.every):
                try:
                    self.run_once()
                except sqlite3.OperationalError:
                    pass  # busy or locked this time: the next tick tries again
            self.run_once()
        except sqlite3.Error:
            pass  # the file went away (a test's temp home): nothing left to checkpoint
        finally:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def close(self) -> None:
        """Stop the thread after one last checkpoint."""
        if self._thread is not None:
            import sqlalchemy as sa

            self._stop.set()
            self._thread.join(10)
            sa.event.remove(self.engine, "connect", _no_autocheckpoint)
            self.engine.dispose()  # connections reopen with automatic checkpoints again
            self._thread = None


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()
