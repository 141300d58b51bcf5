"""Webhooks: a job's events POSTed as JSON to its URLs, signed, retried, never lost.

Events are ``item.labeled`` (an item got its answers) and ``job.completed`` (the job
finished: ``status`` is Completed or Failed). Each is written to an outbox table in the same
transaction as the change that caused it, then background threads deliver it: a POST of
the JSON body with

* ``X-Loopworks-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes under the
  job's ``webhook_secret`` (compare it with :func:`sign` in constant time);
* ``X-Loopworks-Event`` (the event name) and ``X-Loopworks-Delivery`` (the outbox id: the
  same on every retry, so a receiver can drop duplicates).

Any 2xx answer crosses the delivery off. Anything else is a failed attempt: an error status,
a redirect (a 3xx is never followed), no connection or no answer within the timeout. Failed
attempts are retried after 0.5, 1, 2, 4 and 8 seconds; after the last retry the delivery is
marked given up with the last error, and stays in the table. Delivery is at least once: a
crash between the receiver's 2xx and the cross-off sends it again.

**Only public receivers.** A webhook URL is ``http://`` or ``https://`` with a host and no
``user:password@`` (checked when the job is created, :func:`check_url`). Addresses are
checked at each attempt, since DNS answers change: the host is resolved once and the POST
goes to the checked address itself (the Host header and, for https, SNI and the certificate
check still use the name), so a name cannot resolve to one address for the check and to
another for the connection. Refused are loopback (``127.0.0.0/8`` in any spelling, such as
``127.1``, ``2130706433`` or ``0x7f000001``; ``::1``), private networks (``10/8``,
``172.16/12``, ``192.168/16``, ``fc00::/7``), link-local (``169.254/16``, where cloud
metadata lives; ``fe80::/10``), unspecified (``0.0.0.0``, ``::``), shared, multicast,
reserved and documentation ranges, and IPv6 addresses that embed such an IPv4 address
(``::ffff:127.0.0.1``), whether written in the URL or resolved from a name. A refused
delivery is given up at once. The ``webhook_allow`` setting (``LOOPWORKS_WEBHOOK_ALLOW``,
read at each attempt) lets webhooks reach such addresses: comma-separated addresses,
networks and host names, e.g. ``127.0.0.1/32,10.0.0.0/8,hooks.internal``.

**Errors that do not map a network.** The stored ``last_error`` is ``HTTP <status>``,
:data:`NO_ANSWER` (the same text for a closed port, a silent one and one that answers
something other than HTTP) or :data:`REFUSED`; the details go to this module's logger.

**Lanes.** Deliveries to one destination (scheme, host and port) go one at a time, in outbox
order, on one lane; up to :data:`LANES` lanes run at once, and the dispatcher starts lanes for
other destinations while a slow one is busy, so a slow receiver delays only its own events.
A lane claims each delivery just before attempting it; other processes leave a claimed
delivery alone until the claim ends, which is after the attempt's timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConfigurationError
from loopworks.labeling.destinations import (
    Address,
    Allowlist,
    PinnedConnection,
    PinnedTLSConnection,
    Target,
    check_url,
    parse_target,
    resolve,
)
from loopworks.labeling.schema import jobs, outbox
from loopworks.labeling.transactions import transaction
from loopworks.settings import load_settings

__all__ = ["BACKOFF_SECONDS", "LANES", "NO_ANSWER", "REFUSED", "Dispatcher", "check_url",
           "deliveries", "enqueue", "sign"]

log = logging.getLogger(__name__)

#: Waits before each retry; one first attempt plus these makes six in all.
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: How long one process owns a delivery beyond the attempt's timeout (resolving the host
#: comes first and is not under that timeout); other processes leave it alone meanwhile.
CLAIM_SECONDS = 60.0
#: Destinations delivered to at the same time.
LANES = 8
#: The stored error when an address is refused (the delivery is given up at once).
REFUSED = "refused: the address is not allowed for webhooks"
#: The stored error for every failure below HTTP: unresolvable, closed, silent, not HTTP.
NO_ANSWER = "no answer (connection failed or timed out)"




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
                    "last_error": r.last_error, "delivered_at": r.delivered_at,
                    "created_at": r.created_at})
    return out


def _destination(url: str) -> str:
    target = parse_target(url)
    return target.destination if isinstance(target, Target) else url


_PENDING = (outbox.c.delivered_at.is_(None), outbox.c.gave_up_at.is_(None))


class Dispatcher:
    """Delivers due outbox rows on lanes, one per destination, started on the first
    :meth:`wake` (or driven synchronously with :meth:`deliver_due`).

    Args:
        engine: The metadata database holding the outbox.
        backoff: Waits before each retry, in seconds.
        timeout: Seconds one attempt may take, from connecting to the answer's headers.
        lanes: Destinations delivered to at the same time.
        allow: ``webhook_allow`` entries; None reads the setting at each attempt.
        tls: TLS settings for https receivers (default: the system's CAs, names checked).
    """

    def __init__(self, engine: sa.Engine, backoff: Sequence[float] = BACKOFF_SECONDS,
                 timeout: float = 10.0, *, lanes: int = LANES,
                 allow: Sequence[str] | None = None, tls: ssl.SSLContext | None = None) -> None:
        if lanes < 1:
            raise ConfigurationError("a webhook dispatcher needs at least one lane",
                                     setting="lanes")
        self.engine = engine
        self.backoff = tuple(backoff)
        self.timeout = timeout
        self.lanes = lanes
        self.allow = None if allow is None else tuple(allow)
        self._tls = tls
        self._event = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # Lanes by destination, and the attempts in flight (for close() to cut short).
        self._lock = threading.Condition()
        self._busy: dict[str, threading.Thread] = {}
        self._in_flight: set[PinnedConnection] = set()

    def wake(self) -> None:
        """Start the thread if needed and have it look at the outbox now."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="loopworks-webhooks")
                self._thread.start()
        self._event.set()

    def resume(self) -> None:
        """Deliver what an earlier process left in the outbox (a crash, a restart): the
        server and :func:`loopworks.open` call this once at start, not every constructor."""
        if self.pending():
            self.wake()

    def close(self, timeout: float = 10.0) -> None:
        """Stop delivering: attempts in flight are cut short and their deliveries, like
        every other pending one, stay in the outbox (due at once) for next time."""
        self._stopping = True
        self._event.set()
        with self._lock:
            for conn in self._in_flight:
                conn.abort()
            threads = list(self._busy.values())
        end = time.monotonic() + timeout
        for thread in [self._thread, *threads]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, end - time.monotonic()))

    def _run(self) -> None:
        while not self._stopping:
            self._event.clear()
            try:
                self._start_lanes(None)
                wait = self._next_wait()
            except Exception:  # the database went away (tests, shutdown): try again later
                log.warning("webhook dispatcher: cannot read the outbox", exc_info=True)
                wait = 1.0
            self._event.wait(wait)  # a lane that ends sets it too

    def deliver_due(self, now: datetime | None = None) -> float:
        """Attempt every delivery due at ``now`` (default: this moment), and wait for them.

        Destinations are delivered to in parallel, as in the background.

        Returns:
            Seconds until the next pending delivery is due (at most 5).
        """
        horizon = now or utcnow()
        while not self._stopping:
            left = self._start_lanes(horizon)
            with self._lock:
                if not self._busy and not left:
                    break
                if self._busy:
                    self._lock.wait(1.0)  # until a lane ends
        return self._next_wait()

    def _start_lanes(self, horizon: datetime | None) -> bool:
        """Start a lane for each destination with due deliveries and none running yet.

        Returns:
            Whether due destinations were left without a lane (all lanes busy).
        """
        with transaction(self.engine) as conn:
            urls = conn.execute(sa.select(outbox.c.url).distinct().where(
                *_PENDING, outbox.c.next_attempt_at <= (horizon or utcnow()))
                .limit(10_000)).scalars().all()
        by_destination: dict[str, list[str]] = {}
        for url in urls:
            by_destination.setdefault(_destination(url), []).append(url)
        left = False
        with self._lock:
            for destination, group in by_destination.items():
                if self._stopping:
                    break
                if destination in self._busy or len(self._busy) >= self.lanes:
                    left = True
                    continue
                lane = threading.Thread(target=self._lane, args=(destination, group, horizon),
                                        daemon=True, name=f"loopworks-webhooks {destination}")
                self._busy[destination] = lane
                lane.start()
        return left

    def _next_wait(self) -> float:
        with transaction(self.engine) as conn:
            upcoming = conn.execute(sa.select(
                outbox.c.url, sa.func.min(outbox.c.next_attempt_at)).where(*_PENDING)
                .group_by(outbox.c.url)).all()
        with self._lock:
            if len(self._busy) >= self.lanes:
                return 5.0  # the next lane to end wakes the dispatcher
            times = [at for url, at in upcoming
                     if at is not None and _destination(url) not in self._busy]
        if not times:
            return 5.0
        return max(0.05, min(5.0, (min(t for t in times if t) - utcnow()).total_seconds()))

    def _lane(self, destination: str, urls: list[str], horizon: datetime | None) -> None:
        """Deliver one destination's due rows, oldest first, one at a time."""
        try:
            while not self._stopping:
                row = self._claim_next(urls, horizon)
                if row is None:
                    break
                error, give_up = self._attempt(row)
                if self._stopping and error is not None:
                    self._release(row)  # cut short by close(): not the receiver's failure
                else:
                    self._record(row, error, give_up)
        except Exception:  # the database went away: the claim runs out, another try later
            log.warning("webhooks to %s: lane stopped", destination, exc_info=True)
        finally:
            with self._lock:
                self._busy.pop(destination, None)
                self._lock.notify_all()
            self._event.set()

    def _claim_next(self, urls: list[str], horizon: datetime | None) -> Any:
        """The oldest due row for ``urls``, claimed for this process, or None."""
        now = utcnow()
        with transaction(self.engine) as conn:
            due = conn.execute(
                sa.select(outbox, jobs.c.spec).join(jobs, jobs.c.id == outbox.c.job_id)
                .where(*_PENDING, outbox.c.url.in_(urls),
                       outbox.c.next_attempt_at <= (horizon or now))
                .order_by(outbox.c.id).limit(10)).all()
            for row in due:
                got = conn.execute(outbox.update().where(
                    outbox.c.id == row.id, *_PENDING,
                    outbox.c.next_attempt_at == row.next_attempt_at
                ).values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS + self.timeout))
                ).rowcount
                if got:
                    return row
        return None

    def _allowlist(self) -> Allowlist:
        if self.allow is not None:
            return Allowlist(self.allow)
        return Allowlist(load_settings().webhook_allow)

    def _attempt(self, row: Any) -> tuple[str | None, bool]:
        """POST one delivery. Returns the error (None: delivered) and whether to give up."""
        target = parse_target(row.url)
        if isinstance(target, str):
            return f"refused: the URL {target}", True
        try:
            allow = self._allowlist()
        except ConfigurationError as exc:
            return f"refused: {exc}", False
        try:
            addresses = resolve(target.host, target.port)
        except (OSError, UnicodeError) as exc:
            log.info("webhook %s to %s: cannot resolve: %s", row.id, target.destination, exc)
            return NO_ANSWER, False
        allowed = [a for a in addresses if allow.permits(target.host, a)]
        if not allowed:
            log.info("webhook %s to %s refused: %s", row.id, target.destination,
                     ", ".join(map(str, addresses)))
            return REFUSED, True
        body = row.payload.encode()
        secret = json.loads(row.spec).get("webhook_secret", "")
        return self._post(target, allowed, row.event, row.id, body, secret), False

    def _post(self, target: Target, addresses: list[Address], event: str, delivery: int,
              body: bytes, secret: str) -> str | None:
        conn: PinnedConnection
        try:
            if target.scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                conn = PinnedTLSConnection(target.host, target.port, addresses,
                                            self.timeout, self._tls)
            else:
                conn = PinnedConnection(target.host, target.port, addresses, self.timeout)
        except (http.client.HTTPException, ValueError) as exc:  # a host http.client refuses
            log.info("webhook %s to %s: %s", delivery, target.destination, exc)
            return NO_ANSWER
        watchdog = threading.Timer(self.timeout, conn.abort)
        watchdog.daemon = True
        with self._lock:
            self._in_flight.add(conn)
            if self._stopping:
                conn.abort()
        watchdog.start()
        try:
            conn.request("POST", target.path, body=body, headers={
                "Content-Type": "application/json", "User-Agent": "loopworks-webhooks",
                "X-Loopworks-Event": event, "X-Loopworks-Delivery": str(delivery),
                "X-Loopworks-Signature": sign(secret, body)})
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException, ValueError) as exc:
            log.info("webhook %s to %s: %s: %s", delivery, target.destination,
                     type(exc).__name__, exc)
            return NO_ANSWER
        finally:
            watchdog.cancel()
            watchdog.join()
            with self._lock:
                self._in_flight.discard(conn)
            conn.close()
        if 200 <= status < 300:
            return None
        if 300 <= status < 400:
            return f"HTTP {status} (redirects are not followed)"
        return f"HTTP {status}"

    def _record(self, row: Any, error: str | None, give_up: bool = False) -> None:
        now = utcnow()
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts}
        if error is None:
            values["delivered_at"] = now
        elif give_up or attempts > len(self.backoff):
            values.update(gave_up_at=now, last_error=error)
        else:
            values.update(last_error=error, next_attempt_at=now + timedelta(
                seconds=self.backoff[attempts - 1]))
        with transaction(self.engine) as conn:
            conn.execute(outbox.update().where(outbox.c.id == row.id).values(**values))

    def _release(self, row: Any) -> None:
        with transaction(self.engine) as conn:
            conn.execute(outbox.update().where(outbox.c.id == row.id, *_PENDING)
                         .values(next_attempt_at=utcnow()))

    def pending(self) -> int:
        """How many deliveries are neither delivered nor given up."""
        with transaction(self.engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(outbox).where(
                *_PENDING)).scalar_one())
