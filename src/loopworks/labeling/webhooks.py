"""Webhooks: a job's events POSTed as JSON to its URLs, signed, retried, never lost.

Events are ``item.labeled`` (an item got its answers) and ``job.completed`` (the job
finished: ``status`` is Completed or Failed). Each is written to an outbox table in the same
transaction as the change that caused it, then a background thread delivers it: a POST of
the JSON body with

* ``X-Loopworks-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes under the
  job's ``webhook_secret`` (compare it with :func:`sign` in constant time);
* ``X-Loopworks-Event`` (the event name) and ``X-Loopworks-Delivery`` (the outbox id: the
  same on every retry, so a receiver can drop duplicates).

Any 2xx answer crosses the delivery off. Anything else (an error status, a refused
connection, a timeout) is retried after 0.5, 1, 2, 4 and 8 seconds; after the last retry the
delivery is marked given up with the last error, and stays in the table. Delivery is at
least once: a crash between the receiver's 2xx and the cross-off sends it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loopworks.labeling.schema import jobs, outbox
from loopworks.labeling.transactions import transaction

__all__ = ["BACKOFF_SECONDS", "Dispatcher", "deliveries", "enqueue", "sign"]

#: Waits before each retry; one first attempt plus these makes six in all.
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: How long one process owns a delivery it is attempting (other processes leave it alone).
CLAIM_SECONDS = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def enqueue(conn: sa.Connection, job_id: int, urls: Sequence[str], event: str,
            payload: dict[str, Any], now: datetime) -> None:
    """Write one delivery per URL into the outbox, inside the caller's transaction."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    conn.execute(outbox.insert(), [{"job_id": job_id, "url": url, "event": event,
                                    "payload": body, "attempts": 0, "next_attempt_at": now,
                                    "created_at": now} for url in urls])


def deliveries(engine: sa.Engine, job_id: int | None = None) -> list[dict[str, Any]]:
    """The outbox's rows (optionally one job's), oldest first, with their state."""
    query = sa.select(outbox).order_by(outbox.c.id)
    if job_id is not None:
        query = query.where(outbox.c.job_id == job_id)
    with transaction(engine) as conn:
        rows = conn.execute(query).all()
    out = []
    for r in rows:
        state = "delivered" if r.delivered_at else "gave-up" if r.gave_up_at else "pending"
        out.append({"id": r.id, "job_id": r.job_id, "url": r.url, "event": r.event,
                    "payload": json.loads(r.payload), "attempts": r.attempts, "state": state,
                    "last_error": r.last_error, "delivered_at": _aware(r.delivered_at),
                    "created_at": _aware(r.created_at)})
    return out


class Dispatcher:
    """Delivers due outbox rows from a daemon thread, started on the first :meth:`wake`.

    Args:
        engine: The metadata database holding the outbox.
        backoff: Waits before each retry, in seconds.
        timeout: Seconds to wait for a receiver's answer.
    """

    def __init__(self, engine: sa.Engine, backoff: Sequence[float] = BACKOFF_SECONDS,
                 timeout: float = 10.0) -> None:
        self.engine = engine
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self._event = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def wake(self) -> None:
        """Start the thread if needed and have it look at the outbox now."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="loopworks-webhooks")
                self._thread.start()
        self._event.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (pending deliveries stay in the outbox for next time)."""
        self._stopping = True
        self._event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping:
            self._event.clear()
            try:
                wait = self.deliver_due()
            except Exception:  # the database went away (tests, shutdown): try again later
                wait = 1.0
            self._event.wait(wait)

    def deliver_due(self, now: datetime | None = None) -> float:
        """Attempt every delivery that is due.

        Returns:
            Seconds until the next pending delivery is due (at most 5).
        """
        now = now or _now()
        with transaction(self.engine) as conn:
            due = conn.execute(
                sa.select(outbox, jobs.c.spec).join(jobs, jobs.c.id == outbox.c.job_id)
                .where(outbox.c.delivered_at.is_(None), outbox.c.gave_up_at.is_(None),
                       outbox.c.next_attempt_at <= now)
                .order_by(outbox.c.id).limit(100)).all()
            claimed = []
            for row in due:
                got = conn.execute(outbox.update().where(
                    outbox.c.id == row.id, outbox.c.next_attempt_at == row.next_attempt_at
                ).values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))).rowcount
                if got:
                    claimed.append(row)
        for row in claimed:
            if self._stopping:
                break
            secret = json.loads(row.spec).get("webhook_secret", "")
            error = self._post(row.url, row.event, row.id, row.payload.encode(), secret)
            self._record(row, error)
        with transaction(self.engine) as conn:
            upcoming = conn.execute(sa.select(sa.func.min(outbox.c.next_attempt_at)).where(
                outbox.c.delivered_at.is_(None), outbox.c.gave_up_at.is_(None))).scalar()
        if upcoming is None:
            return 5.0
        return max(0.05, min(5.0, (upcoming.replace(tzinfo=upcoming.tzinfo or UTC)
                                   - _now()).total_seconds()))

    def _post(self, url: str, event: str, delivery: int, body: bytes, secret: str
              ) -> str | None:
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "loopworks-webhooks",
            "X-Loopworks-Event": event, "X-Loopworks-Delivery": str(delivery),
            "X-Loopworks-Signature": sign(secret, body)})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def _record(self, row: Any, error: str | None) -> None:
        now = _now()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts}
        if error is None:
            values["delivered_at"] = now
        elif attempts > len(self.backoff):
            values.update(gave_up_at=now, last_error=error)
        else:
            values.update(last_error=error, next_attempt_at=now + timedelta(
                seconds=self.backoff[attempts - 1]))
        with transaction(self.engine) as conn:
            conn.execute(outbox.update().where(outbox.c.id == row.id).values(**values))

    def pending(self) -> int:
        """How many deliveries are neither delivered nor given up."""
        with transaction(self.engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
                outbox.c.delivered_at.is_(None), outbox.c.gave_up_at.is_(None))).scalar_one())
