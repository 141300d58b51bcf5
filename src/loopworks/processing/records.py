"""Records of script processing jobs (:mod:`loopworks.processing.scripts`) in the metadata
database, so every process sharing the database (several servers, on several machines, and
the CLI) sees every job, wherever it runs.

A record is the job's JSON document plus what those processes coordinate through:

* ``runner``, the host and process running the job, and ``heartbeat_at``, when that process
  last said it was alive: it refreshes the heartbeat every :data:`HEARTBEAT_SECONDS`. A
  reader that finds a job InProgress or Stopping whose heartbeat is older than
  :data:`STALE_AFTER_SECONDS` marks it Failed (the process was killed, or its machine lost)
  with a conditional update, so readers racing each other write one failure, and a runner
  that was only slow is not overwritten by it (nor overwrites it later: see :meth:`save`).
* ``stop_requested``: set by a stop from any process; the running process polls it.

Times are the database's clock (PostgreSQL's ``now()``; a SQLite database is on one
machine, whose clock it is), so the clocks of the machines need not agree.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loopworks.clock import as_utc, utcnow
from loopworks.errors import ConfigurationError, ConflictError, NotFoundError
from loopworks.metadata import READ_ONLY
from loopworks.metadata.tables import processing_jobs

__all__ = ["ACTIVE", "HEARTBEAT_SECONDS", "STALE_AFTER_SECONDS", "JobRecord",
           "ScriptJobRecords", "this_runner"]

#: How often the process running a job refreshes its heartbeat.
HEARTBEAT_SECONDS = 5.0
#: A job InProgress or Stopping whose heartbeat is older than this is Failed when read: its
#: process is gone. Six missed heartbeats, so a busy machine is not taken for a dead one.
STALE_AFTER_SECONDS = 30.0
#: The statuses of a job whose process is (or should be) running it.
ACTIVE = ("InProgress", "Stopping")


def this_runner() -> str:
    """This process as a record names its runner: ``<host> pid <pid>``."""
    return f"{socket.gethostname()} pid {os.getpid()}"[:255]


@dataclass(frozen=True)
class JobRecord:
    """One job's record: its document (the job as :class:`ScriptJob` writes it), status,
    runner, last heartbeat and whether a stop was asked."""

    name: str
    status: str
    document: dict[str, Any]
    runner: str
    heartbeat_at: datetime | None
    stop_requested: bool


class ScriptJobRecords:
    """Create, read, save and stop job records of one metadata database.

    Args:
        engine: The metadata database.
        stale_after: Seconds without a heartbeat after which a running job is taken for
            one whose process died (:data:`STALE_AFTER_SECONDS`).
    """

    def __init__(self, engine: sa.Engine, *, stale_after: float = STALE_AFTER_SECONDS
                 ) -> None:
        if not stale_after > 0:
            raise ConfigurationError("stale_after must be a positive number of seconds",
                                     setting="stale_after")
        self.engine = engine
        self.stale_after = stale_after

    def create(self, name: str, document: dict[str, Any], *, created_at: datetime,
               runner: str) -> None:
        """A new record, InProgress, run by ``runner`` (its first heartbeat now).

        Raises:
            ConflictError: A job of that name exists (run anywhere).
        """
        try:
            with self.engine.begin() as conn:
                conn.execute(processing_jobs.insert().values(
                    name=name, status="InProgress", document=_dumps(document),
                    runner=runner[:255], heartbeat_at=_now(conn), stop_requested=False,
                    created_at=created_at))
        except sa.exc.IntegrityError:
            raise ConflictError(f"a processing job named {name!r} exists already",
                                job=name) from None

    def get(self, name: str) -> JobRecord:
        """A job's record; a running job whose process is gone comes back Failed.

        Raises:
            NotFoundError: No job of that name.
        """
        with self._reading() as conn:
            row = conn.execute(sa.select(processing_jobs).where(
                processing_jobs.c.name == name)).first()
            now = _now(conn) if row is not None and row.status in ACTIVE else None
        if row is None:
            raise NotFoundError(f"no processing job {name!r} (see `loopworks processing "
                                "list`)", job=name)
        return self._live(row, now)

    def list(self) -> builtins.list[JobRecord]:
        """Every job's record, newest first (running jobs whose process is gone: Failed)."""
        with self._reading() as conn:
            rows = conn.execute(sa.select(processing_jobs).order_by(
                processing_jobs.c.created_at.desc(), processing_jobs.c.name)).all()
            now = _now(conn) if any(r.status in ACTIVE for r in rows) else None
        return [self._live(row, now) for row in rows]

    def save(self, name: str, document: dict[str, Any], *, status: str | None = None
             ) -> bool:
        """The running process writes the job's document, and ``status`` when it ended
        (None keeps the status: InProgress, or Stopping if a stop was asked); the heartbeat
        is refreshed too.

        Returns:
            False, and nothing written, when the record has ended meanwhile: a reader took
            the process for dead and failed the job, which stays Failed.
        """
        with self.engine.begin() as conn:
            values: dict[str, Any] = {"document": _dumps(document), "heartbeat_at": _now(conn)}
            if status is not None:
                values["status"] = status
            changed = conn.execute(processing_jobs.update().where(
                processing_jobs.c.name == name, processing_jobs.c.status.in_(ACTIVE))
                .values(**values)).rowcount
        return bool(changed)

    def request_stop(self, name: str) -> JobRecord:
        """Ask the process running a job to stop it: the job is Stopping until it does.

        Raises:
            NotFoundError: No job of that name.
            ConflictError: The job has ended.
        """
        record = self.get(name)  # a job whose process is gone ends Failed here
        if record.status in ACTIVE:
            with self.engine.begin() as conn:
                changed = conn.execute(processing_jobs.update().where(
                    processing_jobs.c.name == name, processing_jobs.c.status.in_(ACTIVE))
                    .values(stop_requested=True, status="Stopping")).rowcount
            record = self.get(name)
            if changed:
                return record
        raise ConflictError(f"processing job {name!r} is {record.status}", job=name)

    def beat(self, names: Iterable[str], *, refresh: bool = True) -> set[str]:
        """What the process running ``names`` does every few moments: refresh their
        heartbeats (when ``refresh``) and learn which of them must stop.

        Returns:
            The names whose instances must stop: a stop was asked, or the record has ended
            (a reader failed the job) or is gone.
        """
        wanted = sorted(set(names))
        if not wanted:
            return set()
        query = sa.select(processing_jobs.c.name, processing_jobs.c.status,
                          processing_jobs.c.stop_requested).where(
            processing_jobs.c.name.in_(wanted))
        if refresh:
            with self.engine.begin() as conn:
                conn.execute(processing_jobs.update().where(
                    processing_jobs.c.name.in_(wanted), processing_jobs.c.status.in_(ACTIVE))
                    .values(heartbeat_at=_now(conn)))
                rows = conn.execute(query).all()
        else:
            with self._reading() as conn:
                rows = conn.execute(query).all()
        found = {row.name: row for row in rows}
        return {name for name in wanted if name not in found or found[name].stop_requested
                or found[name].status not in ACTIVE}

    # ---------------------------------------------------------------- internals
    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        """A transaction that only reads (on SQLite it takes no write lock)."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
            yield conn

    def _live(self, row: Any, now: datetime | None) -> JobRecord:
        """The record of ``row``, failed first if it runs without a heartbeat since
        ``stale_after`` before ``now``."""
        record = _record(row)
        if now is None or record.status not in ACTIVE:
            return record
        seen = record.heartbeat_at
        if seen is not None and seen >= now - timedelta(seconds=self.stale_after):
            return record
        return self._fail_stale(record)

    def _fail_stale(self, record: JobRecord) -> JobRecord:
        """Fail a job whose process stopped sending heartbeats: once, only if it still
        runs without one (whoever loses the race reads the winner's record)."""
        seen = record.heartbeat_at
        reason = (f"the server process running it ({record.runner}) stopped: last seen at "
                  f"{seen.isoformat(timespec='seconds') if seen else 'never'} (no heartbeat "
                  f"for over {self.stale_after:g} s)")
        with self.engine.begin() as conn:
            now = _now(conn)
            document = {**record.document, "status": "Failed", "failure_reason": reason,
                        "ended_at": now.isoformat()}
            cutoff = now - timedelta(seconds=self.stale_after)
            changed = conn.execute(processing_jobs.update().where(
                processing_jobs.c.name == record.name, processing_jobs.c.status.in_(ACTIVE),
                sa.or_(processing_jobs.c.heartbeat_at.is_(None),
                       processing_jobs.c.heartbeat_at < cutoff))
                .values(status="Failed", document=_dumps(document))).rowcount
            if not changed:  # failed by another reader, or the runner was only late
                return _record(conn.execute(sa.select(processing_jobs).where(
                    processing_jobs.c.name == record.name)).one())
        return replace(record, status="Failed", document=document)


def _now(conn: sa.Connection) -> datetime:
    """Now by the database's clock (PostgreSQL's; SQLite's machine is this one)."""
    if conn.dialect.name == "postgresql":
        return as_utc(conn.execute(sa.select(sa.func.now())).scalar_one())
    return utcnow()


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, default=str)


def _record(row: Any) -> JobRecord:
    return JobRecord(row.name, row.status, json.loads(row.document), row.runner,
                     row.heartbeat_at, bool(row.stop_requested))
