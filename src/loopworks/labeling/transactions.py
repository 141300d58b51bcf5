"""Transactions on the metadata database, queued in Python before they reach SQLite.

SQLite has one writer at a time, and loopworks begins every SQLite transaction with
``BEGIN IMMEDIATE``. When threads of one process (the server's request threads) collide
there, SQLite's busy handler makes the losers sleep and poll, in steps growing from 1 ms to
100 ms, so under load a request can wait seconds for a lock that was free most of that time.
Queuing those threads on one lock per engine first hands the database over as soon as it is
free. Other processes still meet SQLite's busy timeout; PostgreSQL needs no queue.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator

import sqlalchemy as sa

__all__ = ["transaction"]

_LOCKS: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def _lock(engine: sa.Engine) -> threading.RLock | None:
    if engine.dialect.name != "sqlite":
        return None
    with _GUARD:
        lock = _LOCKS.get(engine)
        if lock is None:
            lock = _LOCKS[engine] = threading.RLock()
        return lock


@contextlib.contextmanager
def transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """``engine.begin()``, queued behind this process's other SQLite transactions.

    Yields:
        A connection inside a transaction, committed when the block ends without error.
    """
    lock = _lock(engine)
    if lock is None:
        with engine.begin() as conn:
            yield conn
        return
    with lock, engine.begin() as conn:
        yield conn
