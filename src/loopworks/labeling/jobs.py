"""Labeling jobs: items from a manifest, leased to workers, answered, consolidated.

Assignment rules, enforced inside one database transaction per request:

* a worker never gets an item it has answered or holds a lease on;
* an item is handed out only while its answers plus live leases are fewer than the job's
  workers per item, so no item ever keeps more than N answers;
* a lease expires after the task's time limit and the item returns to the queue.

SQLite serializes writers (``BEGIN IMMEDIATE``); PostgreSQL locks the candidate item row
(``FOR UPDATE SKIP LOCKED``) so concurrent workers do not wait on each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loopworks.errors import (
    ConfigurationError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
)
from loopworks.labeling.workforce import Role, Worker, Workforce

__all__ = ["JobSpec", "JobStatus", "LabelingJobs", "Task", "TaskType", "read_manifest",
           "read_table_items"]


class TaskType(StrEnum):
    """What people are asked to do with each item."""

    TEXT_CLASSIFICATION = "text-classification"
    TEXT_CLASSIFICATION_MULTILABEL = "text-classification-multilabel"


class JobStatus(StrEnum):
    """Ground Truth's job statuses."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    STOPPED = "Stopped"


@dataclass
class JobSpec:
    """A labeling job's settings."""

    name: str
    team: str
    labels: list[str]
    task_type: TaskType = TaskType.TEXT_CLASSIFICATION
    instructions: str = ""
    workers_per_item: int = 1
    time_limit_seconds: int = 300
    label_attribute: str = ""
    status: JobStatus = JobStatus.IN_PROGRESS
    created_at: str = ""
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.task_type = TaskType(self.task_type)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigurationError("a job needs distinct labels", setting="labels")
        if not 1 <= self.workers_per_item <= 100:
            raise ConfigurationError("workers per item must be 1-100", setting="workers")
        if self.time_limit_seconds < 10:
            raise ConfigurationError("the time limit must be at least 10 seconds",
                                     setting="time_limit")
        self.label_attribute = self.label_attribute or self.name


@dataclass(frozen=True)
class Task:
    """One item leased to one worker until ``expires_at``."""

    job: str
    item_id: int
    source: str
    data: dict[str, Any]
    labels: list[str]
    task_type: str
    instructions: str
    expires_at: datetime


_meta = sa.MetaData()
jobs = sa.Table(
    "label_jobs", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("team", sa.String(63), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
items = sa.Table(
    "label_items", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.ForeignKey("label_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("answers", sa.Integer, nullable=False, default=0),
    sa.Column("leases", sa.Integer, nullable=False, default=0),
    # Matches next_task's ORDER BY (most-answered first, then input order) so finding the
    # next item reads the index instead of sorting every open item.
    sa.Index("ix_label_items_next", "job_id", sa.text("answers DESC"), "seq"),
)
leases = sa.Table(
    "label_leases", _meta,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_label_leases_worker", "job_id", "worker_id"),
)
answers = sa.Table(
    "label_answers", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), nullable=False),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("worker_id", sa.Integer, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("item_id", "worker_id", name="uq_answer_item_worker"),
    sa.Index("ix_label_answers_worker", "job_id", "worker_id"),
)
skips = sa.Table(
    "label_skips", _meta,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Index("ix_label_skips_worker", "job_id", "worker_id"),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_table_items(path: str | Path, text_column: str, limit: int | None = None
                     ) -> list[tuple[str, dict[str, Any]]]:
    """Items from a CSV or Parquet file: the text column is the source, other columns kept."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", file=str(path))
    frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    if text_column not in frame.columns:
        raise InputError(f"{path}: no text column {text_column!r}; columns are "
                         f"{', '.join(map(str, frame.columns))}", file=str(path))
    frame = frame.head(limit) if limit else frame
    keep = [c for c in frame.columns
            if frame[c].dtype.kind in "biufOSU" or str(frame[c].dtype) in ("string", "str")]
    records = json.loads(frame[keep].to_json(orient="records", date_format="iso"))
    out = []
    for row, record in enumerate(records, start=1):
        text = record.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}, row {row}: empty {text_column!r}", file=str(path),
                             row=row)
        out.append((text, {"source": text, **record}))
    return out


def read_manifest(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (source text, other fields) per line of a Ground Truth input manifest.

    Raises:
        InputError: A line is not a JSON object with ``source`` (text) or ``source-ref``
            (a local text file); names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist", file=str(path))
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}, line {number}: invalid JSON ({exc.msg})",
                                 file=str(path), line=number) from None
            if not isinstance(record, dict):
                raise InputError(f"{path}, line {number}: each line must be a JSON object",
                                 file=str(path), line=number)
            if isinstance(record.get("source"), str) and record["source"].strip():
                yield record["source"], record
            elif isinstance(record.get("source-ref"), str):
                ref = (path.parent / record["source-ref"]).resolve() \
                    if "://" not in record["source-ref"] else None
                if ref is None or not ref.is_file():
                    raise InputError(f"{path}, line {number}: source-ref "
                                     f"{record['source-ref']!r} is not a readable file",
                                     file=str(path), line=number)
                yield ref.read_text(encoding="utf-8"), record
            else:
                raise InputError(f"{path}, line {number}: needs a non-empty 'source' text or "
                                 "a 'source-ref'", file=str(path), line=number)


class LabelingJobs:
    """Labeling jobs in the metadata database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.workforce = Workforce(engine)
        _meta.create_all(engine)
        self._postgres = engine.dialect.name == "postgresql"

    # ------------------------------------------------------------------- jobs
    def create_job(self, spec: JobSpec,
                   manifest: str | Path | Sequence[str] | list[tuple[str, dict[str, Any]]]
                   ) -> JobSpec:
        """Create a job with all its items at once (a bad line creates nothing).

        ``manifest`` is a JSON Lines manifest path, a list of texts, or (text, fields) pairs
        (see :func:`read_table_items`).
        """
        self.workforce.team(spec.team)
        if isinstance(manifest, str | Path):
            records = list(read_manifest(manifest))
        else:
            records = [(m, {"source": m}) if isinstance(m, str) else m for m in manifest]
        if not records:
            raise InputError("the manifest holds no items", file=str(manifest))
        spec.created_at = _now().isoformat()
        try:
            with self.engine.begin() as conn:
                key = conn.execute(jobs.insert().values(
                    name=spec.name, team=spec.team, spec=_dump_spec(spec),
                    status=spec.status.value, created_at=_now())).inserted_primary_key
                assert key is not None
                rows = [{"job_id": key[0], "seq": i, "source": text, "answers": 0, "leases": 0,
                         "data": json.dumps(data)} for i, (text, data) in enumerate(records)]
                for start in range(0, len(rows), 5000):
                    conn.execute(items.insert(), rows[start:start + 5000])
        except sa.exc.IntegrityError:
            raise ConflictError(f"labeling job {spec.name!r} already exists",
                                job=spec.name) from None
        return self.job(spec.name)

    def job(self, name: str) -> JobSpec:
        """A job's spec with its counters."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.name == name)).first()
            if row is None:
                raise NotFoundError(f"no labeling job {name!r}", job=name)
            spec = _load_spec(row.spec, row.status)
            total, done = conn.execute(sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case(
                    (items.c.answers >= spec.workers_per_item, 1), else_=0)), 0)
            ).where(items.c.job_id == row.id)).one()
            n_answers = conn.execute(sa.select(sa.func.count()).select_from(answers).where(
                answers.c.job_id == row.id)).scalar_one()
        spec.counts = {"items": int(total), "labeled": int(done),
                       "unlabeled": int(total) - int(done), "answers": int(n_answers)}
        if spec.status is JobStatus.IN_PROGRESS and total and done == total:
            spec.status = JobStatus.COMPLETED  # every item has its answers
        return spec

    def _job_row(self, conn: sa.Connection, name: str) -> Any:
        row = conn.execute(sa.select(jobs).where(jobs.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no labeling job {name!r}", job=name)
        return row

    def jobs_for(self, worker: Worker) -> list[JobSpec]:
        """Jobs the worker may work on (its teams'; admins see all)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs.c.name, jobs.c.team).order_by(jobs.c.id)).all()
        return [self.job(r.name) for r in rows
                if worker.role is Role.ADMIN or r.team in worker.teams]

    def _check_member(self, row: Any, worker: Worker) -> None:
        if worker.role is not Role.ADMIN and row.team not in worker.teams:
            raise PermissionDenied(f"worker {worker.name!r} is not in team {row.team!r} of "
                                   f"job {row.name!r}", worker=worker.name, job=row.name)

    # -------------------------------------------------------------- assignment
    def next_task(self, job: str, worker: Worker) -> Task | None:
        """Lease the next item this worker has not seen and whose quota is not full."""
        now = _now()
        with self.engine.begin() as conn:
            row = self._job_row(conn, job)
            self._check_member(row, worker)
            spec = _load_spec(row.spec, row.status)
            if spec.status is not JobStatus.IN_PROGRESS:
                return None
            self._expire(conn, row.id, now)
            mine = sa.select(leases.c.item_id).where(leases.c.worker_id == worker.id,
                                                     leases.c.job_id == row.id)
            done = sa.select(answers.c.item_id).where(answers.c.worker_id == worker.id,
                                                      answers.c.job_id == row.id)
            skipped = sa.select(skips.c.item_id).where(skips.c.worker_id == worker.id,
                                                       skips.c.job_id == row.id)
            query = (sa.select(items.c.id, items.c.source, items.c.data)
                     .where(items.c.job_id == row.id,
                            items.c.answers + items.c.leases < spec.workers_per_item,
                            items.c.id.not_in(mine), items.c.id.not_in(done),
                            items.c.id.not_in(skipped))
                     .order_by(items.c.answers.desc(), items.c.seq).limit(1))
            if self._postgres:
                query = query.with_for_update(skip_locked=True)
            item = conn.execute(query).first()
            if item is None:
                return None
            expires = now + timedelta(seconds=spec.time_limit_seconds)
            conn.execute(leases.insert().values(item_id=item.id, worker_id=worker.id,
                                                job_id=row.id, accepted_at=now,
                                                expires_at=expires))
            conn.execute(items.update().where(items.c.id == item.id)
                         .values(leases=items.c.leases + 1))
        return Task(job, item.id, item.source, json.loads(item.data), spec.labels,
                    spec.task_type.value, spec.instructions, expires)

    def current_task(self, job: str, worker: Worker) -> Task | None:
        """The worker's live lease in this job, if any (so a page reload shows the same
        item instead of leasing another)."""
        now = _now()
        with self.engine.connect() as conn:
            row = self._job_row(conn, job)
            self._check_member(row, worker)
            spec = _load_spec(row.spec, row.status)
            found = conn.execute(
                sa.select(items.c.id, items.c.source, items.c.data, leases.c.expires_at)
                .join(leases, leases.c.item_id == items.c.id)
                .where(leases.c.job_id == row.id, leases.c.worker_id == worker.id,
                       leases.c.expires_at >= now)
                .order_by(leases.c.accepted_at).limit(1)).first()
        if found is None:
            return None
        return Task(job, found.id, found.source, json.loads(found.data), spec.labels,
                    spec.task_type.value, spec.instructions, _aware(found.expires_at))

    def skip(self, job: str, item_id: int, worker: Worker) -> None:
        """Give a leased item back: it returns to the queue for others, never to this worker."""
        with self.engine.begin() as conn:
            row = self._job_row(conn, job)
            self._check_member(row, worker)
            gone = conn.execute(leases.delete().where(
                leases.c.item_id == item_id, leases.c.worker_id == worker.id)).rowcount
            if not gone:
                raise ConflictError(f"no task {item_id} held by worker {worker.name!r} in job "
                                    f"{job!r}", job=job, item_id=item_id)
            conn.execute(items.update().where(items.c.id == item_id)
                         .values(leases=items.c.leases - 1))
            conn.execute(skips.insert().values(item_id=item_id, worker_id=worker.id,
                                               job_id=row.id))

    def _expire(self, conn: sa.Connection, job_id: int, now: datetime) -> None:
        expired = conn.execute(sa.select(leases.c.item_id).where(
            leases.c.job_id == job_id, leases.c.expires_at < now)).scalars().all()
        for item_id in expired:
            conn.execute(leases.delete().where(leases.c.item_id == item_id,
                                               leases.c.expires_at < now))
            conn.execute(items.update().where(items.c.id == item_id)
                         .values(leases=sa.func.max(items.c.leases - 1, 0)
                                 if not self._postgres else
                                 sa.func.greatest(items.c.leases - 1, 0)))

    def submit(self, job: str, item_id: int, worker: Worker, answer: str | list[str]) -> None:
        """Record an answer for a leased item (the lease must be the worker's and live)."""
        now = _now()
        with self.engine.begin() as conn:
            row = self._job_row(conn, job)
            self._check_member(row, worker)
            spec = _load_spec(row.spec, row.status)
            chosen = [answer] if isinstance(answer, str) else list(answer)
            unknown = [a for a in chosen if a not in spec.labels]
            if unknown or (spec.task_type is TaskType.TEXT_CLASSIFICATION and len(chosen) != 1):
                raise ConfigurationError(
                    f"answer {answer!r} is not one of the job's labels {spec.labels}",
                    setting="answer", valid_values=spec.labels)
            lease_query = sa.select(leases).where(leases.c.item_id == item_id,
                                                  leases.c.worker_id == worker.id)
            if self._postgres:
                lease_query = lease_query.with_for_update()
            lease = conn.execute(lease_query).first()
            if lease is None or _aware(lease.expires_at) < now:
                raise ConflictError(
                    f"no live task {item_id} for worker {worker.name!r} in job {job!r}: it "
                    "expired or was never assigned; ask for a new task", job=job,
                    item_id=item_id)
            conn.execute(leases.delete().where(leases.c.item_id == item_id,
                                               leases.c.worker_id == worker.id))
            conn.execute(answers.insert().values(
                item_id=item_id, job_id=row.id, worker_id=worker.id,
                answer=json.dumps(chosen if spec.task_type is not TaskType.TEXT_CLASSIFICATION
                                  else chosen[0]),
                accepted_at=lease.accepted_at, submitted_at=now))
            conn.execute(items.update().where(items.c.id == item_id).values(
                answers=items.c.answers + 1, leases=items.c.leases - 1))

    def answers(self, job: str) -> list[dict[str, Any]]:
        """Every answer of a job with worker name and times."""
        with self.engine.connect() as conn:
            row = self._job_row(conn, job)
            rows = conn.execute(sa.select(answers, items.c.seq).join(
                items, items.c.id == answers.c.item_id).where(answers.c.job_id == row.id)
                .order_by(answers.c.id)).all()
        names = {w.id: w.name for w in self.workforce.workers()}
        return [{"item": r.seq, "item_id": r.item_id, "worker": names.get(r.worker_id),
                 "answer": json.loads(r.answer), "accepted_at": _aware(r.accepted_at),
                 "submitted_at": _aware(r.submitted_at),
                 "seconds": (_aware(r.submitted_at) - _aware(r.accepted_at)).total_seconds()}
                for r in rows]

    def worker_scores(self, job: str, gold_field: str = "gold") -> list[dict[str, Any]]:
        """Per worker: answers given and accuracy on gold items (items whose manifest line
        carries ``gold_field`` with the known answer, mixed in with the rest)."""
        spec = self.job(job)
        with self.engine.connect() as conn:
            job_id = self._job_row(conn, job).id
            gold: dict[int, Any] = {}
            for item_id, data in conn.execute(sa.select(items.c.id, items.c.data).where(
                    items.c.job_id == job_id)):
                value = json.loads(data).get(gold_field)
                if isinstance(value, int) and not isinstance(value, bool) \
                        and 0 <= value < len(spec.labels):
                    value = spec.labels[value]
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

    def stop(self, job: str) -> None:
        """Stop handing out tasks (answers so far are kept)."""
        with self.engine.begin() as conn:
            row = self._job_row(conn, job)
            conn.execute(jobs.update().where(jobs.c.id == row.id).values(
                status=JobStatus.STOPPED.value))


def _dump_spec(spec: JobSpec) -> str:
    return json.dumps({"name": spec.name, "team": spec.team, "labels": spec.labels,
                       "task_type": spec.task_type.value, "instructions": spec.instructions,
                       "workers_per_item": spec.workers_per_item,
                       "time_limit_seconds": spec.time_limit_seconds,
                       "label_attribute": spec.label_attribute, "created_at": spec.created_at})


def _load_spec(text: str, status: str) -> JobSpec:
    data = json.loads(text)
    return JobSpec(status=JobStatus(status), **data)
