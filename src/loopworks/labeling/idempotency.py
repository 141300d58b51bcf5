"""Idempotent answers: the same ``Idempotency-Key`` gives the stored result, not a 409.

A client whose connection drops after the server stored its answer cannot tell whether the
answer landed; retrying it would find the lease gone and get a conflict. With a key (any
1-255 printable ASCII characters, unique per worker, e.g. a UUID made when the task was
shown), the first attempt stores its result in the same transaction as the answer, and a
retry with the key gets that result back. A key reused for another task is refused (422),
as the IETF Idempotency-Key draft asks. Keys are kept for :data:`KEEP`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loopworks.errors import ValidationError
from loopworks.labeling.schema import idempotency
from loopworks.labeling.spec import Task

__all__ = ["KEEP", "amend", "check_key", "forget_before", "recall", "remember"]

#: How long a key's result is kept for retries.
KEEP = timedelta(hours=24)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def check_key(key: str) -> str:
    """The key itself, or ValidationError naming the rule it breaks."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValidationError("an Idempotency-Key is 1-255 printable ASCII characters "
                              "without spaces (a UUID is a good one)", field="Idempotency-Key")
    return key


def _task_json(task: Task | None) -> dict[str, Any] | None:
    if task is None:
        return None
    return {"job": task.job, "item_id": task.item_id, "source": task.source,
            "data": task.data, "labels": task.labels, "task_type": task.task_type,
            "instructions": task.instructions, "expires_at": task.expires_at.isoformat(),
            "examples": task.examples}


def _task(data: dict[str, Any] | None) -> Task | None:
    if data is None:
        return None
    return Task(**{**data, "expires_at": datetime.fromisoformat(data["expires_at"])})


def recall(conn: sa.Connection, worker_id: int, key: str, job_id: int, item_id: int
           ) -> tuple[Task | None] | None:
    """The stored result of the worker's key: ``(next task or None,)``, or None when the key
    is new.

    Raises:
        ValidationError: The key was used for another job's or item's answer.
    """
    row = conn.execute(sa.select(idempotency.c.job_id, idempotency.c.item_id,
                                 idempotency.c.result).where(
        idempotency.c.worker_id == worker_id, idempotency.c.key == key)).first()
    if row is None:
        return None
    if (row.job_id, row.item_id) != (job_id, item_id):
        raise ValidationError(f"the Idempotency-Key {key!r} was already used for another "
                              "answer; use a new key for each task", field="Idempotency-Key")
    return (_task(json.loads(row.result)["next"]),)


def remember(conn: sa.Connection, worker_id: int, key: str, job_id: int, item_id: int,
             next_task: Task | None, now: datetime) -> None:
    """Store an answer's result under its key, in the answer's own transaction."""
    conn.execute(idempotency.insert().values(
        worker_id=worker_id, key=key, job_id=job_id, item_id=item_id,
        result=json.dumps({"next": _task_json(next_task)}), created_at=now))


def amend(conn: sa.Connection, worker_id: int, key: str, next_task: Task | None) -> None:
    """Replace the next task stored under a key (leased after the answer's transaction)."""
    conn.execute(idempotency.update().where(
        idempotency.c.worker_id == worker_id, idempotency.c.key == key).values(
        result=json.dumps({"next": _task_json(next_task)})))


def forget_before(conn: sa.Connection, when: datetime) -> int:
    """Drop keys stored before ``when``; returns how many."""
    return int(conn.execute(idempotency.delete().where(idempotency.c.created_at < when))
               .rowcount)
