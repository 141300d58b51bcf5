"""Group commit for single-record writes: many ``put_record`` calls, one write.

Each record is queued per group (and TTL) as its caller gave it. The first caller to find no
write in progress leads: it takes everything queued, checks and converts it as one batch (one
Arrow conversion instead of one per record; when the batch fails its check, record by record,
so a bad record fails alone and only its caller sees the error), writes it as one batch to
both stores (one Delta commit, one online transaction, under the ingest journal like any
batch), wakes the callers it wrote for, and hands the lead to the first caller that queued
meanwhile. Every caller still returns only once its record is in
both stores, so nothing about durability changes; with N concurrent writers a commit carries
up to N records instead of one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordBatcher"]

#: Writes one batch; returns, per record, whether it was stored (False: a newer one was) or
#: the error that record alone failed with.
Commit = Callable[[list[Any]], list[bool | BaseException]]


@dataclass(eq=False)
class _Pending:
    item: Any
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

    def put(self, key: Hashable, item: Any, commit: Commit) -> bool:
        """Queue one record and return once it is written (or it or its batch failed)."""
        me = _Pending(item)
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
            results = commit([p.item for p in batch])
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    pending.error = result
                else:
                    pending.written = result
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
