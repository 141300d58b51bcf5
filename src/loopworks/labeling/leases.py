"""Handing out tasks: leases on items, the held task, skips, images.

Assignment rules, enforced inside one database transaction per request:

* a worker never gets an item it has answered, skipped or holds a lease on;
* an item is handed out only while its answers plus live leases are fewer than the answers
  it wants (the job's workers per item; more under adaptive redundancy), so no item ever
  keeps more answers than that;
* a lease expires after the task's time limit and the item returns to the queue;
* with ``max_concurrent_items`` (Ground Truth's MaxConcurrentTaskCount), once that many
  items are in flight (leased or partly answered), only those are handed out.

SQLite serializes writers (``BEGIN IMMEDIATE``, queued per process in
:mod:`loopworks.labeling.transactions`); PostgreSQL locks the candidate item row
(``FOR UPDATE SKIP LOCKED``) so concurrent workers do not wait on each other. When every
item left for a worker is locked by another transaction, the request waits for those to
commit and looks again: "no task" must mean the job has nothing left for this worker.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import (
    NotFoundError,
)
from loopworks.labeling.lifecycle import JobLifecycle
from loopworks.labeling.schema import (
    items,
    leases,
    skips,
)
from loopworks.labeling.spec import JobSpec, JobStatus, Task
from loopworks.labeling.statements import Q as _Q
from loopworks.labeling.workforce import Worker

__all__ = ["LOCKED_WAIT_SECONDS", "Leases"]

log = logging.getLogger(__name__)

#: How long a lease request waits on PostgreSQL for items locked by other transactions
#: (they are short: a lease or an answer) before it gives up and says there is no task.
LOCKED_WAIT_SECONDS = 5.0


class Leases(JobLifecycle):
    """Leasing tasks to workers (see the module's rules)."""

    def _task(self, job: str, spec: JobSpec, item: Any, expires: datetime) -> Task:
        return Task(job, item.id, item.source, json.loads(item.data), spec.labels,
                    spec.task_type.value, spec.instructions, expires, spec.examples)

    def next_task(self, job: str, worker: Worker, *, held_first: bool = False
                  ) -> Task | None:
        """Lease the next item this worker has not seen and whose quota is not full.

        Args:
            job: The job's name.
            worker: Who asks.
            held_first: Give back the task the worker already holds in this job, if any,
                before leasing another (in the same transaction): asking twice then gives
                the same task, so a reply lost on the way strands no lease.

        Returns:
            The task, or None when nothing is left for this worker (or the job is not in
            progress).

        Raises:
            NotFoundError: No such job.
            PermissionDenied: The worker is not in the job's team.
        """
        now = utcnow()
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            spec = self.spec_of(row)
            self._check_member(row, spec, worker)
            task = None
            if held_first:
                found = conn.execute(_Q.held, {"b_job": row.id, "b_worker": worker.id,
                                               "b_now": now}).first()
                if found is not None:
                    return self._task(row.name, spec, found, found.expires_at)
            if self.settle(conn, row, spec, now) is JobStatus.IN_PROGRESS:
                task = self._lease(conn, row, spec, worker, now)
        if task is None:
            self.follow_ups.no_task(job)  # e.g. a round of automated labeling a restart missed
        return task

    def _lease(self, conn: sa.Connection, row: Any, spec: JobSpec, worker: Worker,
               now: datetime) -> Task | None:
        """Lease the worker's next item; on PostgreSQL wait while the only items left are
        locked by transactions in flight (another worker leasing or answering them), so
        None always means nothing is left for this worker, never "busy right now"."""
        deadline = time.monotonic() + LOCKED_WAIT_SECONDS
        pause = 0.002
        while True:
            task, busy = self._try_lease(conn, row, spec, worker, now)
            if not busy:
                return task
            if time.monotonic() >= deadline:
                log.warning("job %r: every item left for worker %s stayed locked by other "
                            "transactions for %.0f s; no task this time", row.name,
                            worker.id, LOCKED_WAIT_SECONDS)
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _try_lease(self, conn: sa.Connection, row: Any, spec: JobSpec, worker: Worker,
                   now: datetime) -> tuple[Task | None, bool]:
        """One attempt at :meth:`_lease`: ``(task, False)``, ``(None, False)`` when nothing
        is left, or ``(None, True)`` when what is left is locked by others (PostgreSQL's
        ``SKIP LOCKED`` passed over it): ask again once they commit."""
        params = {"b_job": row.id, "b_worker": worker.id}
        most = spec.max_concurrent_items
        if most is not None and conn.execute(_Q.items_in_flight, params).scalar_one() >= most:
            plain, locking = _Q.candidate_in_flight, _Q.candidate_in_flight_pg
        else:
            plain, locking = _Q.candidate, _Q.candidate_pg
        query = locking if self.on_postgres else plain
        item = conn.execute(query, params).first()
        if item is None and self._sweep(conn, row.id, now, force=True):
            item = conn.execute(query, params).first()
        if item is None:
            if self.on_postgres and conn.execute(plain, params).first() is not None:
                return None, True  # each statement sees what others committed since
            self.complete_if_done(conn, row, spec, now)
            return None, False
        expires = now + timedelta(seconds=spec.time_limit_seconds)
        conn.execute(_Q.lease_insert, {"item_id": item.id, "worker_id": worker.id,
                                       "job_id": row.id, "accepted_at": now,
                                       "expires_at": expires})
        conn.execute(_Q.lease_taken, {"b_item": item.id})
        return self._task(row.name, spec, item, expires), False

    def has_work(self, job: str, worker: Worker) -> bool:
        """Whether :meth:`next_task` would find a task for the worker now. A read: nothing
        is leased (what a page shows before the worker asks for a task).

        Raises:
            NotFoundError: No such job.
            PermissionDenied: The worker is not in the job's team or role.
        """
        from loopworks.metadata import READ_ONLY

        now = utcnow()
        with self.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
            row = self.job_row(conn, job)
            spec = self.spec_of(row)
            self._check_member(row, spec, worker)
            if JobStatus(row.status) is not JobStatus.IN_PROGRESS:
                return False
            if conn.execute(_Q.candidate, {"b_job": row.id, "b_worker": worker.id}).first():
                return True
            # An expired lease of someone else's goes back to the queue on the next request.
            return conn.execute(sa.select(leases.c.item_id).where(
                leases.c.job_id == row.id, leases.c.expires_at < now,
                leases.c.worker_id != worker.id).limit(1)).first() is not None

    def current_task(self, job: str, worker: Worker) -> Task | None:
        """The worker's live lease in this job, if any (so a page reload shows the same
        item instead of leasing another). A read: it never waits for the write lock."""
        from loopworks.metadata import READ_ONLY

        with self.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
            row = self.job_row(conn, job)
            spec = self.spec_of(row)
            self._check_member(row, spec, worker)
            found = conn.execute(_Q.held, {"b_job": row.id, "b_worker": worker.id,
                                           "b_now": utcnow()}).first()
        if found is None:
            return None
        return self._task(job, spec, found, found.expires_at)

    def skip(self, job: str, item_id: int, worker: Worker) -> None:
        """Give a leased item back: it returns to the queue for others, never to this worker."""
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            self._check_member(row, self.spec_of(row), worker)
            gone = conn.execute(leases.delete().where(
                leases.c.item_id == item_id, leases.c.worker_id == worker.id,
                leases.c.job_id == row.id)).rowcount
            if not gone:
                raise self._missing_task(conn, row, item_id, worker)
            conn.execute(items.update().where(items.c.id == item_id)
                         .values(leases=items.c.leases - 1))
            conn.execute(skips.insert().values(item_id=item_id, worker_id=worker.id,
                                               job_id=row.id))
            if JobStatus(row.status) is JobStatus.STOPPING:
                self._maybe_stopped(conn, row, utcnow())

    def image_path(self, job: str, item_id: int, worker: Worker) -> Path:
        """The image file of an item of an image job, for the worker's page to show.

        Raises:
            NotFoundError: No such item in the job, or the job is not an image job.
            PermissionDenied: The worker is not in the job's team.
        """
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            spec = self.spec_of(row)
            self._check_member(row, spec, worker)
            source = conn.execute(sa.select(items.c.source).where(
                items.c.id == item_id, items.c.job_id == row.id)).scalar()
        if source is None or not spec.task_type.is_image:
            raise NotFoundError(f"no image item {item_id} in job {job!r}", job=job,
                                item_id=item_id)
        return Path(source)
