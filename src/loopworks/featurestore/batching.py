"""Group commit for single-record writes: many ``put_record`` calls, one write.

Each record is checked on its caller's thread (a bad one fails alone), then queued per group
(and TTL). The first caller to find no write in progress leads: it takes everything queued,
writes it as one batch to both stores (one Delta commit, one online transaction, under the
ingest journal like any batch), wakes the callers it wrote for, and hands the lead to the
first caller that queued meanwhile. Every caller still returns only once its record is in
both stores, so nothing about durability changes; with N concurrent writers a commit carries
up to N records instead of one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import pyarrow as pa

__all__ = ["RecordBatcher"]

#: Writes one batch; returns, per record, whether it was stored (False: a newer one was).
Commit = Callable[[list[pa.Table]], list[bool]]


@dataclass(eq=False)
class _Pending:
    table: pa.Table
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    written: bool = False
    error: BaseException | None = None


class RecordBatcher:
    """Group commit of single records, per key (a group and its TTL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[Hashable, list[_Pending]] = {}
        self._busy: set[Hashable] = set()

    def put(self, key: Hashable, table: pa.Table, commit: Commit) -> bool:
        """Queue one checked record and return once it is written (or its batch failed)."""
        me = _Pending(table)
        with self._lock:
            self._queues.setdefault(key, []).append(me)
            if key not in self._busy:
                self._busy.add(key)
                me.lead = True
        while not me.lead:
            me.wake.wait()
            me.wake.clear()
            if me.done:
                break
        if not me.done:
            self._lead(key, commit)
        if me.error is not None:
            raise me.error
        return me.written

    def _lead(self, key: Hashable, commit: Commit) -> None:
        with self._lock:
            batch = self._queues.pop(key, [])
        try:
            results = commit([p.table for p in batch])
            for pending, written in zip(batch, results, strict=True):
                pending.written = written
        except BaseException as exc:  # every caller of the batch gets the failure
            for pending in batch:
                pending.error = exc
        for pending in batch:
            pending.done = True
            pending.wake.set()
        with self._lock:
            queue = self._queues.get(key)
            if queue:
                queue[0].lead = True
                queue[0].wake.set()
            else:
                self._busy.discard(key)
