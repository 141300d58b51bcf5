"""A labeling job's life: created from its items, settled lazily through its states,
stopped, expired, deleted; and the shared core the other parts of
:class:`~loopworks.labeling.jobs.LabelingJobs` (leases, answers) and its collaborators in
this package (automated labeling, exports, progress) build on.

Lifecycle, as in Ground Truth: a job is ``Initializing`` while its items are written (inside
the creating transaction), then ``InProgress``. It becomes ``Completed`` when no item is
open any more and at least one is labeled (``Failed``, with a reason, when none is).
:meth:`JobLifecycle.stop` moves it to ``Stopping`` while workers still hold live leases
(they may still submit them; no new tasks) and to ``Stopped`` once none is left, or at once
when there are none. Items still open when the job's availability lifetime or deadline
passes are marked failed with a reason (never deleted) and the job completes. These
transitions are evaluated lazily, on reads and requests, and by :meth:`expire_due`; illegal
transitions raise :class:`~loopworks.errors.ConflictError` naming both states.

The collaborator interface (public, used by :mod:`~loopworks.labeling.autolabel`,
:mod:`~loopworks.labeling.output` and :mod:`~loopworks.labeling.progress`):
:meth:`~JobLifecycle.transaction`, :meth:`~JobLifecycle.job_row`,
:meth:`~JobLifecycle.spec_of`, :meth:`~JobLifecycle.settle`,
:meth:`~JobLifecycle.complete_if_done` and :attr:`~JobLifecycle.on_postgres`.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loopworks.clock import as_utc, utcnow
from loopworks.errors import (
    ConfigurationError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
)
from loopworks.labeling import webhooks
from loopworks.labeling.followups import FollowUps
from loopworks.labeling.manifest import GOLD_FIELD, check_items, gold_label, read_manifest
from loopworks.labeling.schema import (
    ItemState,
    answers,
    auto_items,
    auto_rounds,
    items,
    jobs,
    leases,
    machine_labels,
    skips,
)
from loopworks.labeling.spec import MOVES as _MOVES
from loopworks.labeling.spec import SPEC_FIELDS as _SPEC_FIELDS
from loopworks.labeling.spec import JobSpec, JobStatus, may_work_on
from loopworks.labeling.spec import dump_spec as _dump_spec
from loopworks.labeling.statements import Q as _Q
from loopworks.labeling.transactions import transaction
from loopworks.labeling.workforce import Role, Worker, Workforce

__all__ = ["EXPIRE_EVERY_SECONDS", "JobLifecycle"]

#: Expired leases are swept at most this often per job (and whenever no task is found).
EXPIRE_EVERY_SECONDS = 1.0


class JobLifecycle:
    """Labeling jobs in the metadata database: creating, reading and settling them."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.workforce = Workforce(engine)
        #: True on PostgreSQL: row locks (FOR UPDATE) where SQLite has its one write lock.
        self.on_postgres = engine.dialect.name == "postgresql"
        self._specs: dict[int, tuple[str, JobSpec]] = {}
        self._swept: dict[int, float] = {}
        # Delivers events as they are written; a server also wakes it at start for the
        # deliveries an earlier process left pending (nothing starts here).
        self.webhooks = webhooks.Dispatcher(engine)
        #: What other services do after an answer (registered by :func:`loopworks.open`).
        self.follow_ups = FollowUps()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction on the metadata database (SQLite: queued per process, then
        ``BEGIN IMMEDIATE``): what automated labeling and review join their writes to."""
        with transaction(self.engine) as conn:
            yield conn

    def create_job(self, spec: JobSpec,
                   manifest: str | Path | Sequence[str] | list[tuple[str, dict[str, Any]]]
                   ) -> JobSpec:
        """Create a job with all its items at once (a bad line creates nothing).

        Args:
            spec: The job's settings.
            manifest: A JSON Lines manifest path, a list of texts (image paths for image
                task types), or (source, fields) pairs (see :func:`read_table_items`).

        Returns:
            The job as stored, with its counters.

        Raises:
            InputError: A bad manifest line or item (names it); nothing is created.
            ConflictError: A job of that name exists.
            NotFoundError: The team does not exist.
        """
        self.workforce.team(spec.team)
        records = self._records(spec, manifest)
        spec.created_at = utcnow().isoformat()
        if spec.deadline and spec.deadline_at is not None and spec.deadline_at <= utcnow():
            raise ConfigurationError(f"the deadline {spec.deadline} has passed",
                                     setting="deadline")
        try:
            with self.transaction() as conn:
                key = conn.execute(jobs.insert().values(
                    name=spec.name, team=spec.team, spec=_dump_spec(spec),
                    status=JobStatus.INITIALIZING.value, created_at=utcnow())
                ).inserted_primary_key
                assert key is not None
                self._insert_items(conn, key[0], spec, records, 0)
                if spec.auto_label is not None:
                    self._hold_for_auto_label(conn, key[0], spec, records)
                self._move(conn, key[0], spec.name, JobStatus.INITIALIZING,
                           JobStatus.IN_PROGRESS)
        except sa.exc.IntegrityError:
            raise ConflictError(f"labeling job {spec.name!r} already exists",
                                job=spec.name) from None
        return self.job(spec.name)

    def _hold_for_auto_label(self, conn: sa.Connection, job_id: int, spec: JobSpec,
                             records: list[tuple[str, dict[str, Any]]]) -> None:
        """Automated labeling: a seeded random validation sample and first training sample
        stay open for people; every other item is held back for the rounds.

        Items with a known answer (``gold``) join the validation sample first: people's
        answers on them measure how often people are right, which the threshold needs."""
        import numpy as np

        from loopworks.labeling.activelearning import initial_sample_sizes

        settings = spec.auto_label or {}
        from loopworks.models.classifier import needs_embeddings_extra

        if needs_embeddings_extra(str(settings.get("features"))):  # fail now, not in a round
            from loopworks.embeddings.model import EMBEDDINGS_INSTALL, embeddings_missing
            from loopworks.errors import MissingDependencyError

            missing = embeddings_missing()
            if missing:
                raise MissingDependencyError(missing, "embeddings",
                                             "a model reading sentence embeddings",
                                             EMBEDDINGS_INSTALL)
        n_items = len(records)
        validation, training = initial_sample_sizes(n_items)
        gold = []
        for line, (_, data) in enumerate(records, start=1):
            if data.get(GOLD_FIELD) is None:
                continue
            if gold_label(data, spec.labels) is None:
                raise InputError(f"item {line}: gold answer {data[GOLD_FIELD]!r} is not one "
                                 f"of the labels {', '.join(spec.labels)}", line=line,
                                 field=GOLD_FIELD)
            gold.append(line - 1)
        budget = settings.get("budget")
        if budget is not None and budget < validation + training:
            raise ConfigurationError(
                f"an auto-label budget of {budget:,} human-labeled items cannot cover the "
                f"first sample people label ({validation:,} validation + {training:,} "
                f"training items for {n_items:,} items)", setting="auto_label.budget")
        order = np.random.default_rng(settings.get("seed", 0)).permutation(n_items)
        if gold:  # gold items first (in the same seeded order), then the rest
            is_gold = np.zeros(n_items, dtype=bool)
            is_gold[gold] = True
            order = np.r_[order[is_gold[order]], order[~is_gold[order]]]
        ids = list(conn.execute(sa.select(items.c.id).where(items.c.job_id == job_id)
                                .order_by(items.c.seq)).scalars())
        picked = [(ids[i], "validation") for i in order[:validation]] + \
            [(ids[i], "training") for i in order[validation:validation + training]]
        conn.execute(auto_items.insert(), [{"item_id": item_id, "job_id": job_id,
                                            "role": role, "round": 0}
                                           for item_id, role in picked])
        open_ids = {item_id for item_id, _ in picked}
        held = [item_id for item_id in ids if item_id not in open_ids]
        for start in range(0, len(held), 5000):
            conn.execute(items.update().where(items.c.id.in_(held[start:start + 5000]))
                         .values(state=ItemState.HELD))

    def _records(self, spec: JobSpec, manifest: Any) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(manifest, str | Path):
            records = list(read_manifest(manifest, spec.task_type))
        else:
            key = "source-ref" if spec.task_type.is_image else "source"
            records = check_items([(m, {key: m}) if isinstance(m, str) else m
                                   for m in manifest], spec.task_type,
                                  objects_ok=bool(spec.template))
        if not records:
            raise InputError("the manifest holds no items", file=str(manifest))
        return records

    def _insert_items(self, conn: sa.Connection, job_id: int, spec: JobSpec,
                      records: list[tuple[str, dict[str, Any]]], first_seq: int,
                      held: bool = False) -> None:
        state = ItemState.HELD if held else ItemState.OPEN
        rows = [{"job_id": job_id, "seq": first_seq + i, "source": text, "answers": 0,
                 "leases": 0, "state": state, "wanted": spec.workers_per_item,
                 "data": json.dumps(data)} for i, (text, data) in enumerate(records)]
        for start in range(0, len(rows), 5000):
            conn.execute(items.insert(), rows[start:start + 5000])

    def add_items(self, job: str,
                  manifest: str | Path | Sequence[str | tuple[str, dict[str, Any]]]
                  ) -> int:
        """Add items to a job in progress; they join the queue after the existing ones.

        Returns:
            How many items were added.

        Raises:
            ConflictError: The job is not in progress (completed, failed, stopping, stopped).
            InputError: A bad manifest line (nothing is added).
        """
        spec = self.job(job)
        records = self._records(spec, manifest)
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            status = JobStatus(row.status)
            if status is not JobStatus.IN_PROGRESS:
                raise ConflictError(f"job {job!r} is {status.value}; items can only be added "
                                    "while it is InProgress", job=job, status=status.value)
            last = conn.execute(sa.select(sa.func.max(items.c.seq)).where(
                items.c.job_id == row.id)).scalar()
            # Items added to an automated-labeling job join the held pool.
            self._insert_items(conn, row.id, spec, records, (last if last is not None else -1)
                               + 1, held=spec.auto_label is not None)
        return len(records)

    def job(self, name: str) -> JobSpec:
        """A job's spec with its status and counters.

        ``counts`` holds Ground Truth's label counters: ``total`` (labeled by anyone:
        human-labeled + machine-labeled), ``human-labeled``, ``machine-labeled`` (by
        automated labeling's model), ``failed`` and ``unlabeled``; and ``items`` (all
        items: total + failed + unlabeled), ``labeled`` (= total) and ``answers``.
        Automated-labeling jobs also count ``held`` (unlabeled items kept back from people
        for the model or a later round).
        """
        with self.transaction() as conn:
            row = self.job_row(conn, name)
            spec = self.spec_of(row)
            status = self.settle(conn, row, spec, utcnow(), check_done=True)
            by_state = {int(state): int(n) for state, n in conn.execute(
                sa.select(items.c.state, sa.func.count()).where(
                    items.c.job_id == row.id).group_by(items.c.state))}
            n_answers = conn.execute(sa.select(sa.func.count()).select_from(answers).where(
                answers.c.job_id == row.id)).scalar_one()
            reason = conn.execute(sa.select(jobs.c.failure_reason).where(
                jobs.c.id == row.id)).scalar()
            machine = 0
            if spec.auto_label is not None:
                machine = conn.execute(sa.select(sa.func.count()).select_from(
                    machine_labels).where(machine_labels.c.job_id == row.id)).scalar_one()
        labeled = int(by_state.get(ItemState.LABELED, 0))
        failed = int(by_state.get(ItemState.FAILED, 0))
        total = sum(by_state.values())
        spec.status, spec.failure_reason = status, reason
        spec.counts = {"items": total, "labeled": labeled,
                       "unlabeled": total - labeled - failed, "answers": int(n_answers),
                       "total": labeled, "human-labeled": labeled - int(machine),
                       "machine-labeled": int(machine), "failed": failed}
        if spec.auto_label is not None:
            spec.counts["held"] = int(by_state.get(ItemState.HELD, 0))
        return spec

    def job_row(self, conn: sa.Connection, name: str) -> Any:
        """The job's row (id, name, status, spec...), read in ``conn``.

        Raises:
            NotFoundError: No such job.
        """
        row = conn.execute(_Q.job_row, {"b_name": name}).first()
        if row is None:
            raise NotFoundError(f"no labeling job {name!r}", job=name)
        return row

    def spec_of(self, row: Any) -> JobSpec:
        """The job's parsed spec, cached per job (a spec never changes once written)."""
        cached = self._specs.get(row.id)
        if cached is None or cached[0] != row.spec:
            cached = (row.spec, JobSpec(**{k: v for k, v in json.loads(row.spec).items()
                                           if k in _SPEC_FIELDS}))
            self._specs[row.id] = cached
        spec = copy.copy(cached[1])
        spec.status, spec.counts = JobStatus(row.status), {}
        return spec

    def jobs_for(self, worker: Worker) -> list[JobSpec]:
        """Jobs the worker may work on: its teams' jobs for its role (admins see all)."""
        with self.transaction() as conn:
            rows = conn.execute(sa.select(jobs.c.name, jobs.c.team).order_by(jobs.c.id)).all()
        specs = [self.job(r.name) for r in rows
                 if worker.role is Role.ADMIN or r.team in worker.teams]
        return [s for s in specs if may_work_on(worker, s)]

    def _check_member(self, row: Any, spec: JobSpec, worker: Worker) -> None:
        """Refuse a worker outside the job's team, or whose role the job is not for."""
        if worker.role is Role.ADMIN:
            return
        if row.team not in worker.teams:
            raise PermissionDenied(f"worker {worker.name!r} is not in team {row.team!r} of "
                                   f"job {row.name!r}", worker=worker.name, job=row.name)
        if not may_work_on(worker, spec):
            raise PermissionDenied(
                f"job {row.name!r} is for {' and '.join(r + 's' for r in spec.roles or ())}; "
                f"worker {worker.name!r} is {worker.role.value}", worker=worker.name,
                job=row.name, role=worker.role.value)

    @staticmethod
    def _missing_task(conn: sa.Connection, row: Any, item_id: int, worker: Worker
                      ) -> Exception:
        """No live lease of the worker on the item: 404 when the item is not this job's at
        all, else a conflict (expired, answered, or never the worker's)."""
        if conn.execute(_Q.item_source, {"b_item": item_id, "b_job": row.id}).first() is None:
            return NotFoundError(f"job {row.name!r} has no task {item_id}", job=row.name,
                                 item_id=item_id)
        return ConflictError(
            f"no live task {item_id} for worker {worker.name!r} in job {row.name!r}: it "
            "expired or was never assigned; ask for a new task", job=row.name,
            item_id=item_id)

    def _move(self, conn: sa.Connection, job_id: int, name: str, old: JobStatus,
              new: JobStatus, reason: str | None = None) -> bool:
        """Change status if it is still ``old``; False when another request got there."""
        if new not in _MOVES.get(old, set()):
            raise ConflictError(f"job {name!r} cannot go from {old.value} to {new.value}",
                                job=name, status=old.value, target=new.value)
        values: dict[str, Any] = {"status": new.value}
        if reason is not None:
            values["failure_reason"] = reason
        done = conn.execute(jobs.update().where(jobs.c.id == job_id,
                                                jobs.c.status == old.value).values(**values))
        return done.rowcount == 1

    def settle(self, conn: sa.Connection, row: Any, spec: JobSpec, now: datetime, *,
               check_done: bool = False, force_sweep: bool = False) -> JobStatus:
        """Apply what time has made true: deadline, expired leases, Stopping → Stopped,
        and (with ``check_done``) completion. Returns the status after it."""
        status = JobStatus(row.status)
        if status not in (JobStatus.IN_PROGRESS, JobStatus.STOPPING):
            return status
        deadline = spec.deadline_at
        if status is JobStatus.IN_PROGRESS and deadline is not None and now >= deadline:
            return self._fail_open(conn, row, spec, now, deadline)
        self._sweep(conn, row.id, now, force=force_sweep or check_done)
        if status is JobStatus.STOPPING:
            return self._maybe_stopped(conn, row, now)
        if check_done:
            return self.complete_if_done(conn, row, spec, now)
        return status

    def _fail_open(self, conn: sa.Connection, row: Any, spec: JobSpec, now: datetime,
                   deadline: datetime) -> JobStatus:
        why = ("the job's deadline" if spec.deadline and deadline == as_utc(
            datetime.fromisoformat(spec.deadline)) else "the job's availability lifetime")
        reason = f"not labeled before {why} ended at {deadline.isoformat()}"
        conn.execute(leases.delete().where(leases.c.job_id == row.id))
        conn.execute(items.update().where(items.c.job_id == row.id,
                                          items.c.state.in_([ItemState.OPEN, ItemState.HELD]))
                     .values(state=ItemState.FAILED, failure_reason=reason, leases=0))
        return self._finish(conn, row, spec, now, f"no item was labeled: {reason}")

    def _finish(self, conn: sa.Connection, row: Any, spec: JobSpec, now: datetime,
                reason: str) -> JobStatus:
        """No item is open: Completed if any is labeled, else Failed with ``reason``."""
        any_labeled = conn.execute(sa.select(items.c.id).where(
            items.c.job_id == row.id, items.c.state == ItemState.LABELED).limit(1)).first()
        new = JobStatus.COMPLETED if any_labeled else JobStatus.FAILED
        if self._move(conn, row.id, row.name, JobStatus.IN_PROGRESS, new,
                      None if any_labeled else reason):
            self._emit(conn, row, spec, "job.completed", now, {"status": new.value, **(
                {} if any_labeled else {"failure_reason": reason})})
            return new
        return JobStatus(conn.execute(sa.select(jobs.c.status).where(
            jobs.c.id == row.id)).scalar_one())

    def complete_if_done(self, conn: sa.Connection, row: Any, spec: JobSpec,
                         now: datetime) -> JobStatus:
        """Complete the job (or fail it, when nothing got labeled) if no item is open any
        more; returns the status after it."""
        if spec.streaming:
            return JobStatus.IN_PROGRESS
        still_open = conn.execute(_Q.open_item, {"b_job": row.id}).first()
        if still_open is not None:
            return JobStatus.IN_PROGRESS
        if spec.auto_label is not None and conn.execute(_Q.held_item, {"b_job": row.id}
                                                        ).first() is not None:
            return JobStatus.IN_PROGRESS  # the next automated-labeling round decides
        return self._finish(conn, row, spec, now, "every item failed")

    def _maybe_stopped(self, conn: sa.Connection, row: Any, now: datetime) -> JobStatus:
        held = conn.execute(sa.select(leases.c.item_id).where(
            leases.c.job_id == row.id, leases.c.expires_at >= now).limit(1)).first()
        if held is not None:
            return JobStatus.STOPPING
        self._move(conn, row.id, row.name, JobStatus.STOPPING, JobStatus.STOPPED)
        return JobStatus.STOPPED

    def _sweep(self, conn: sa.Connection, job_id: int, now: datetime,
               force: bool = False) -> bool:
        """Return expired leases' items to the queue (at most once a second per job unless
        forced). True when any lease was expired."""
        tick = time.monotonic()
        if not force and tick - self._swept.get(job_id, -1e9) < EXPIRE_EVERY_SECONDS:
            return False
        self._swept[job_id] = tick
        expired = conn.execute(sa.select(leases.c.item_id, leases.c.worker_id).where(
            leases.c.job_id == job_id, leases.c.expires_at < now)).all()
        for item_id, worker_id in expired:
            gone = conn.execute(leases.delete().where(
                leases.c.item_id == item_id, leases.c.worker_id == worker_id,
                leases.c.expires_at < now)).rowcount
            if gone:
                conn.execute(items.update().where(items.c.id == item_id)
                             .values(leases=items.c.leases - 1))
        return bool(expired)

    def expire_due(self, now: datetime | None = None) -> dict[str, str]:
        """Settle every running job as of ``now`` (default: the clock): expire leases, fail
        items past the deadline, complete or stop jobs.

        Returns:
            Job name → status, for jobs whose status changed.
        """
        now = as_utc(now) if now is not None else utcnow()
        changed = {}
        with self.transaction() as conn:
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.name, jobs.c.team, jobs.c.spec,
                                          jobs.c.status).where(jobs.c.status.in_(
                                              [JobStatus.IN_PROGRESS.value,
                                               JobStatus.STOPPING.value]))).all()
            for row in rows:
                status = self.settle(conn, row, self.spec_of(row), now, check_done=True)
                if status.value != row.status:
                    changed[row.name] = status.value
        return changed

    def stop(self, job: str) -> JobStatus:
        """Stop handing out tasks; answers so far are kept.

        The job goes to ``Stopping`` while workers hold live leases (they may still submit
        those) and to ``Stopped`` when none is left (at once if there are none).
        Stopping a stopping job changes nothing.

        Returns:
            The status after the call.

        Raises:
            ConflictError: The job is already Completed, Failed or Stopped.
        """
        now = utcnow()
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            spec = self.spec_of(row)
            status = self.settle(conn, row, spec, now, force_sweep=True)
            if status is JobStatus.STOPPING:
                return status
            held = conn.execute(sa.select(leases.c.item_id).where(
                leases.c.job_id == row.id, leases.c.expires_at >= now).limit(1)).first()
            new = JobStatus.STOPPING if held is not None else JobStatus.STOPPED
            self._move(conn, row.id, job, status, new)
            return new

    def append_items(self, job: str, records: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Add (source, fields) items to a job in progress and return their ids, in order
        (human-review loops keep the id of their item)."""
        with self.transaction() as conn:
            return self.append_items_in(conn, job, records)

    def append_items_in(self, conn: sa.Connection, job: str,
                        records: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """:meth:`append_items` inside the caller's transaction (so a human loop's record
        and its item are written together or not at all)."""
        row = self.job_row(conn, job)
        spec = self.spec_of(row)
        records = self._records(spec, records)
        if JobStatus(row.status) is not JobStatus.IN_PROGRESS:
            raise ConflictError(f"job {job!r} is {row.status}; items can only be added "
                                "while it is InProgress", job=job, status=row.status)
        last = conn.execute(sa.select(sa.func.max(items.c.seq)).where(
            items.c.job_id == row.id)).scalar()
        first = (last if last is not None else -1) + 1
        self._insert_items(conn, row.id, spec, records, first, held=spec.auto_label is not None)
        return list(conn.execute(sa.select(items.c.id).where(
            items.c.job_id == row.id, items.c.seq >= first).order_by(items.c.seq)
        ).scalars())

    def create_streaming_job(self, spec: JobSpec) -> JobSpec:
        """Create a streaming job with no items yet (they arrive with append_items)."""
        if not spec.streaming:
            raise ConfigurationError("only streaming jobs start empty", setting="streaming")
        self.workforce.team(spec.team)
        spec.created_at = utcnow().isoformat()
        try:
            with self.transaction() as conn:
                conn.execute(jobs.insert().values(
                    name=spec.name, team=spec.team, spec=_dump_spec(spec),
                    status=JobStatus.IN_PROGRESS.value, created_at=utcnow()))
        except sa.exc.IntegrityError:
            raise ConflictError(f"labeling job {spec.name!r} already exists",
                                job=spec.name) from None
        return self.job(spec.name)

    def delete_job(self, job: str) -> None:
        """Delete a job with its items, leases and answers."""
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            for table in (answers, leases, skips, machine_labels, auto_items, auto_rounds):
                conn.execute(table.delete().where(table.c.job_id == row.id))
            conn.execute(items.delete().where(items.c.job_id == row.id))
            conn.execute(jobs.delete().where(jobs.c.id == row.id))
        self._specs.pop(row.id, None)

    def fail_items(self, job: str, item_ids: Sequence[int], reason: str) -> int:
        """Withdraw open items (their leases end, no more answers are taken) and mark them
        failed with ``reason``; returns how many were open. Used when a human loop is
        stopped or expires."""
        if not item_ids:
            return 0
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            ids = list(item_ids)
            conn.execute(leases.delete().where(leases.c.job_id == row.id,
                                               leases.c.item_id.in_(ids)))
            return int(conn.execute(items.update().where(
                items.c.job_id == row.id, items.c.id.in_(ids),
                items.c.state == ItemState.OPEN).values(
                    state=ItemState.FAILED, failure_reason=reason, leases=0)).rowcount)

    def _emit(self, conn: sa.Connection, row: Any, spec: JobSpec, event: str, now: datetime,
              payload: dict[str, Any]) -> None:
        if spec.webhooks:
            webhooks.enqueue(conn, row.id, spec.webhooks, event,
                             {"event": event, "job": row.name, "at": now.isoformat(),
                              **payload}, now)
            self.webhooks.wake()

    def webhook_deliveries(self, job: str) -> list[dict[str, Any]]:
        """The job's webhook deliveries: delivered, pending, given up (with the last error).

        Raises:
            NotFoundError: No such job.
        """
        with self.engine.connect() as conn:
            job_id = self.job_row(conn, job).id
        return webhooks.deliveries(self.engine, job_id)
