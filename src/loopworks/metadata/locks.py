"""Named locks shared by every process on one metadata database.

Some background work must run once however many server processes (or machines) share the
database: exporting a finished labeling job's outputs, for one. :func:`exclusive` holds a
lock named by a string for as long as the block runs:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection kept for
  the block. The server drops it when that connection ends, so a process killed while
  holding it (``kill -9``, a lost machine) never leaves it held.
- SQLite: an exclusive ``flock`` on a file beside the database, released by the kernel when
  the process dies. SQLite is one machine's database, so a file lock reaches every process
  that can open it.

Work that must run once *and* survive crashes still records its result in the database
under the lock (and checks for it first): the lock only keeps two runs from overlapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from loopworks.errors import ConflictError

__all__ = ["exclusive"]

_POLL_SECONDS = 0.05
# Threads of one process meet here first: flock locks belong to the open file, and a
# PostgreSQL advisory lock is re-entrant per session, so neither keeps out a second thread.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _key(name: str) -> int:
    """A signed 64-bit key for ``name`` (advisory locks are numbered)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


@contextlib.contextmanager
def exclusive(engine: sa.Engine, name: str, *, timeout: float = 60.0) -> Iterator[None]:
    """Hold the lock ``name`` on ``engine``'s database while the block runs.

    Args:
        engine: The metadata database whose processes the lock is shared by.
        name: What is locked, e.g. ``"labeling-export:my-job"``.
        timeout: Seconds to wait for another holder before giving up.

    Raises:
        ConflictError: Another process held the lock for longer than ``timeout``.
    """
    scope = f"{engine.url.render_as_string(hide_password=True)}|{name}"
    with _GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(scope, threading.Lock())
    deadline = time.monotonic() + timeout
    if not thread_lock.acquire(timeout=max(0.0, timeout)):
        raise _busy(name, timeout)
    try:
        if engine.dialect.name == "postgresql":
            with _advisory(engine, name, deadline, timeout):
                yield
        elif engine.dialect.name == "sqlite":
            with _file_lock(engine, name, deadline, timeout):
                yield
        else:  # pragma: no cover - open_engine accepts only these two
            raise NotImplementedError(engine.dialect.name)
    finally:
        thread_lock.release()


def _busy(name: str, timeout: float) -> ConflictError:
    return ConflictError(f"{name} is held by another process (waited {timeout:.0f} s); "
                         "try again when it is done", lock=name)


@contextlib.contextmanager
def _advisory(engine: sa.Engine, name: str, deadline: float, timeout: float
              ) -> Iterator[None]:
    key = _key(name)
    with engine.connect() as conn:
        while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one():
            conn.rollback()  # no transaction left open while waiting
            if time.monotonic() > deadline:
                raise _busy(name, timeout)
            time.sleep(_POLL_SECONDS)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            conn.commit()


@contextlib.contextmanager
def _file_lock(engine: sa.Engine, name: str, deadline: float, timeout: float
               ) -> Iterator[None]:
    import fcntl

    database = engine.url.database
    if not database or database == ":memory:":
        yield  # one process's database: the thread lock is the whole story
        return
    folder = Path(f"{database}.locks")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"
    with path.open("a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _busy(name, timeout) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
