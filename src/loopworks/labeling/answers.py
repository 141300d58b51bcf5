"""Answers: validated against the task type, recorded against a live lease (idempotently
with a key), and what an item does when it has enough of them.

Adaptive redundancy (``JobSpec.adaptive``): when an item reaches the answers it wants but
the share of its workers agreeing with the most common answer is below
``target_confidence``, it wants one more answer, up to ``max_workers``. After an answer is
committed its follow-ups run (:mod:`loopworks.labeling.followups`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import (
    ConflictError,
)
from loopworks.labeling import idempotency
from loopworks.labeling.leases import Leases
from loopworks.labeling.manifest import gold_label
from loopworks.labeling.schema import (
    ItemState,
    answers,
    items,
)
from loopworks.labeling.spec import JobSpec, JobStatus, Task
from loopworks.labeling.statements import Q as _Q
from loopworks.labeling.tasktypes import (
    TaskType,
    from_crowd_form,
    majority_share,
    validate_answer,
)
from loopworks.labeling.workforce import Worker

__all__ = ["AnswerReceipt", "Answers"]

@dataclass(frozen=True)
class AnswerReceipt:
    """What recording an answer gave: the next task (when asked for one) and whether this
    was a retry answered from its idempotency key."""

    next: Task | None
    replayed: bool = False


class Answers(Leases):
    """Recording answers and reading them back."""

    def submit(self, job: str, item_id: int, worker: Worker,
               answer: str | list[str] | dict[str, Any], *,
               idempotency_key: str | None = None) -> None:
        """Record an answer for a leased item (the lease must be the worker's and live).

        Args:
            job: The job's name.
            item_id: The task's item id (of this job: another job's item is not found).
            worker: Who answers.
            answer: A label; a list of labels (multi-label); ``{"entities": [...]}``
                (named entities) or ``{"boundingBoxes": [...]}`` (bounding boxes); see
                :mod:`loopworks.labeling.tasktypes`.
            idempotency_key: Makes a retry safe: see :meth:`record_answer`.

        Raises:
            ConfigurationError: The answer does not fit the task type (names the field).
            ConflictError: No live lease of this worker on the item in this job, or the job
                takes no answers any more.
        """
        self.record_answer(job, item_id, worker, answer, idempotency_key=idempotency_key)

    def submit_and_next(self, job: str, item_id: int, worker: Worker,
                        answer: str | list[str] | dict[str, Any], *,
                        idempotency_key: str | None = None) -> Task | None:
        """Record an answer and lease the worker's next task, in one transaction.

        What a labeling page does on every answer, in one request and one database
        transaction instead of two of each. Same rules and errors as :meth:`submit`; the
        answer is kept even when no next task follows.

        Returns:
            The next task, or None when nothing is left for this worker or the job is no
            longer in progress (this answer may have completed it).
        """
        return self.record_answer(job, item_id, worker, answer, then_next=True,
                                  idempotency_key=idempotency_key).next

    def record_answer(self, job: str, item_id: int, worker: Worker,
                      answer: str | list[str] | dict[str, Any], *, then_next: bool = False,
                      idempotency_key: str | None = None) -> AnswerReceipt:
        """Record an answer (and with ``then_next`` lease the next task), idempotently.

        With an ``idempotency_key`` the result is stored with the answer, and a retry with
        the same key (the reply to the first attempt was lost) gets that result back with
        ``replayed`` set, instead of a conflict for a lease that is gone.

        Raises:
            ValidationError: The key is malformed or was used for another answer.
            ConfigurationError, ConflictError: As :meth:`submit`.
        """
        key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
        try:
            receipt = self._answer(job, item_id, worker, answer, then_next, key)
        except ConflictError:
            if key is None:
                raise
            # A retry that raced its first attempt (PostgreSQL): that one may have won.
            with self.transaction() as conn:
                row = self.job_row(conn, job)
                stored = idempotency.recall(conn, worker.id, key, row.id, item_id)
            if stored is None:
                raise
            return AnswerReceipt(stored[0], replayed=True)
        if not receipt.replayed:
            # What follows an answer (a human loop completed, a round closed): see followups.
            self.follow_ups.answered(job, item_id)
        return receipt

    def _answer(self, job: str, item_id: int, worker: Worker,
                answer: str | list[str] | dict[str, Any], then_next: bool,
                key: str | None) -> AnswerReceipt:
        now = utcnow()
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            spec = self.spec_of(row)
            self._check_member(row, spec, worker)
            if key is not None:
                stored = idempotency.recall(conn, worker.id, key, row.id, item_id)
                if stored is not None:
                    return AnswerReceipt(stored[0], replayed=True)
            status = self.settle(conn, row, spec, now)
            if status not in (JobStatus.IN_PROGRESS, JobStatus.STOPPING):
                raise ConflictError(f"job {job!r} is {status.value} and takes no answers",
                                    job=job, status=status.value)
            mine = {"b_item": item_id, "b_worker": worker.id, "b_job": row.id}
            lease = conn.execute(_Q.lease_of_pg if self.on_postgres else _Q.lease_of,
                                 mine).first()
            if lease is None or lease.expires_at < now:
                raise self._missing_task(conn, row, item_id, worker)
            source = None
            if spec.task_type is TaskType.NAMED_ENTITY_RECOGNITION:
                source = conn.execute(_Q.item_source, {"b_item": item_id,
                                                       "b_job": row.id}).scalar()
            form = None
            if spec.task_type is not TaskType.CUSTOM and isinstance(answer, dict) \
                    and not _native(spec.task_type, answer):  # a task page's crowd form
                form = validate_answer(TaskType.CUSTOM, spec.labels, answer)
                answer = from_crowd_form(spec.task_type, form)
            stored_answer = validate_answer(spec.task_type, spec.labels, answer, source)
            conn.execute(_Q.lease_delete, mine)
            conn.execute(_Q.answer_insert, {
                "item_id": item_id, "job_id": row.id, "worker_id": worker.id,
                "answer": json.dumps(stored_answer), "accepted_at": lease.accepted_at,
                "submitted_at": now, "form": None if form is None else json.dumps(form)})
            n, wanted, seq, state = conn.execute(_Q.answered, {
                "b_item": item_id, "b_final": spec.adaptive is None}).one()
            if n >= wanted:
                self._item_answered(conn, row, spec, item_id, seq, n, wanted, now,
                                    labeled=state == ItemState.LABELED)
            if status is JobStatus.STOPPING:
                self._maybe_stopped(conn, row, now)
            following, busy = None, False
            if then_next and conn.execute(_Q.job_status, {"b_job": row.id}).scalar() \
                    == JobStatus.IN_PROGRESS.value:  # else this answer completed the job
                # Not waiting here for items others have locked: this transaction holds
                # the answered item, which one of them may be waiting for in turn.
                following, busy = self._try_lease(conn, row, spec, worker, now)
            if key is not None:
                idempotency.remember(conn, worker.id, key, row.id, item_id, following, now)
        if busy:  # the answer is in; lease the next task on its own, waiting if need be
            following = self.next_task(job, worker, held_first=True)
            if key is not None and following is not None:
                with self.transaction() as conn:
                    idempotency.amend(conn, worker.id, key, following)
        return AnswerReceipt(following)

    def _item_answered(self, conn: sa.Connection, row: Any, spec: JobSpec, item_id: int,
                       seq: int, n: int, wanted: int, now: datetime, labeled: bool) -> None:
        """The item has the answers it wanted: label it (unless ``labeled`` already), or
        (adaptive) want one more."""
        confidence = None
        if spec.adaptive is not None and not labeled:
            given = [json.loads(a) for a in conn.execute(sa.select(answers.c.answer).where(
                answers.c.item_id == item_id)).scalars()]
            confidence = majority_share(given)
            if confidence < spec.adaptive["target_confidence"] \
                    and wanted < spec.adaptive["max_workers"]:
                conn.execute(items.update().where(items.c.id == item_id)
                             .values(wanted=wanted + 1))
                return
        if not labeled:
            conn.execute(items.update().where(items.c.id == item_id)
                         .values(state=ItemState.LABELED))
        self._emit(conn, row, spec, "item.labeled", now, {
            "item_id": item_id, "item": seq, "answers": n,
            **({"confidence": round(confidence, 4)} if confidence is not None else {})})
        if JobStatus(row.status) is JobStatus.IN_PROGRESS:
            self.complete_if_done(conn, row, spec, now)

    def answers(self, job: str) -> list[dict[str, Any]]:
        """Every answer of a job with worker name and times."""
        with self.transaction() as conn:
            row = self.job_row(conn, job)
            rows = conn.execute(sa.select(answers, items.c.seq).join(
                items, items.c.id == answers.c.item_id).where(answers.c.job_id == row.id)
                .order_by(answers.c.id)).all()
        names = {w.id: w.name for w in self.workforce.workers()}
        return [{"item": r.seq, "item_id": r.item_id, "worker": names.get(r.worker_id),
                 "answer": json.loads(r.answer), "accepted_at": r.accepted_at,
                 "form": json.loads(r.form) if r.form is not None else None,
                 "submitted_at": r.submitted_at,
                 "seconds": (r.submitted_at - r.accepted_at).total_seconds()}
                for r in rows]

    def worker_scores(self, job: str, gold_field: str = "gold") -> list[dict[str, Any]]:
        """Per worker: answers given and accuracy on gold items (items whose manifest line
        carries ``gold_field`` with the known answer, mixed in with the rest)."""
        spec = self.job(job)
        with self.transaction() as conn:
            job_id = self.job_row(conn, job).id
            gold: dict[int, Any] = {}
            for item_id, data in conn.execute(sa.select(items.c.id, items.c.data).where(
                    items.c.job_id == job_id)):
                value = gold_label(json.loads(data), spec.labels, gold_field)
                if value is not None:
                    gold[item_id] = value
        scores: dict[str, dict[str, Any]] = {}
        for answer in self.answers(job):
            entry = scores.setdefault(answer["worker"], {"worker": answer["worker"],
                                                         "answers": 0, "gold_answers": 0,
                                                         "gold_correct": 0})
            entry["answers"] += 1
            if answer["item_id"] in gold:
                entry["gold_answers"] += 1
                entry["gold_correct"] += int(answer["answer"] == gold[answer["item_id"]])
        for entry in scores.values():
            entry["gold_accuracy"] = (entry["gold_correct"] / entry["gold_answers"]
                                      if entry["gold_answers"] else None)
        return sorted(scores.values(), key=lambda e: e["worker"])


def _native(task_type: TaskType, answer: dict[str, Any]) -> bool:
    """A structured answer already in the task type's own shape (``{"entities": [...]}``,
    ``{"boundingBoxes": [...]}``), not a crowd form holding one."""
    key = {TaskType.NAMED_ENTITY_RECOGNITION: "entities",
           TaskType.BOUNDING_BOX: "boundingBoxes"}.get(task_type)
    return key is not None and set(answer) == {key} and isinstance(answer[key], list)
