"""Opening the metadata database from a URL, with the driver imported only when used."""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

from loopworks.errors import ConfigurationError, MissingDependencyError

__all__ = ["READ_ONLY", "BackgroundCheckpointer", "database_url", "dispose_engine", "open_engine"]

#: Execution options for a connection that only reads: on SQLite it then reads its WAL
#: snapshot without taking the write lock (``engine.connect().execution_options(**READ_ONLY)``).
READ_ONLY = {"loopworks_read_only": True}

_ENGINES: dict[str, Any] = {}


@atexit.register
def _dispose_all() -> None:
    for url in list(_ENGINES):
        dispose_engine(url)


def database_url(home: Path, url: str | None = None) -> str:
    """The metadata database URL: argument, ``LOOPWORKS_DATABASE_URL``, else SQLite in home."""
    url = url or os.environ.get("LOOPWORKS_DATABASE_URL")
    if url:
        return url
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'loopworks.db'}"


def open_engine(url: str) -> Any:
    """A SQLAlchemy engine for ``url`` (cached per URL).

    Raises:
        MissingDependencyError: The driver for the URL's database is not installed.
        ConfigurationError: The URL names a database loopworks does not support.
    """
    key = url
    if key in _ENGINES:
        path = url.removeprefix("sqlite:///")
        if url.startswith("sqlite:///") and path != ":memory:" and not os.path.exists(path):
            dispose_engine(key)  # the file was deleted under us: start a fresh database
        else:
            return _ENGINES[key]
    try:
        import sqlalchemy as sa
    except ImportError:
        raise MissingDependencyError("sqlalchemy", "postgres", "the metadata database") from None
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
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
        engine = sa.create_engine(url, pool_pre_ping=True)
    else:
        raise ConfigurationError(
            f"unsupported database URL {url.split(':', 1)[0]}://...; use sqlite:///PATH or "
            "postgresql://USER@HOST/DB",
            setting="LOOPWORKS_DATABASE_URL")
    _ENGINES[key] = engine
    return engine


def dispose_engine(url: str) -> None:
    """Close every pooled connection of the engine opened for ``url`` and forget it."""
    engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()


class BackgroundCheckpointer:
    """Moves a long-running server's SQLite WAL into the database file from a thread of its
    own, instead of inside whichever request's commit crosses SQLite's 1,000-page mark.

    That commit would otherwise do the copy (and its fsync) while the request still holds
    the write lock, and every other request would wait behind it: the slowest 1% of
    answers. A PASSIVE checkpoint never blocks writers or readers. Nothing changes for
    PostgreSQL or for short-lived CLI processes (they keep SQLite's automatic checkpoints).
    """

    def __init__(self, engine: Any, every_seconds: float = 1.0) -> None:
        import threading

        import sqlalchemy as sa

        self.engine = engine
        self.every = every_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
            return
        sa.event.listen(engine, "connect", _no_autocheckpoint)
        engine.dispose()  # pooled connections reopen with the setting above
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import sqlite3

        path = self.engine.url.database
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        try:
            while not self._stop.wait(self.every):
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the file went away (a test's temp home): nothing left to checkpoint
        finally:
            connection.close()

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
