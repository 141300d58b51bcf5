"""The workforce: workers with roles, teams, API tokens, one-time login links, passwords and
browser sessions.

Secrets are never stored: API tokens, login links and session ids are kept as SHA-256
digests (they are long random strings), passwords as scrypt hashes with a per-password salt.
An API token has a public id (the first 12 hex digits of its digest) to list and revoke it
by, an optional expiry, and its last use (recorded at most once a minute). A browser
session lives here too, so signing out or deactivating a worker ends it on the server: a
copied session cookie stops working at once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConfigurationError, ConflictError, NotFoundError, PermissionDenied
from loopworks.labeling.signin import throttle_keys
from loopworks.metadata.tables import credentials, team_members, teams, workers

__all__ = ["SESSION_LIFETIME", "ApiToken", "Role", "Team", "Worker", "Workforce",
           "hash_password", "token_id", "verify_password"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
#: A browser session ends this long after sign-in (or at sign-out, whichever is first).
SESSION_LIFETIME = timedelta(hours=12)
#: A token's last use is written at most this often (each API request checks a token).
LAST_USE_EVERY = timedelta(minutes=1)


class Role(StrEnum):
    """What a worker may do: admins manage, annotators label, reviewers review."""

    ADMIN = "admin"
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"


@dataclass(frozen=True)
class Worker:
    """A person (or a simulated worker) who labels or reviews."""

    id: int
    name: str
    role: Role
    teams: tuple[str, ...] = ()
    active: bool = True


@dataclass(frozen=True)
class ApiToken:
    """What is known of an API token (never the token itself)."""

    id: str
    worker: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class Team:
    """A group of workers that jobs and review flows are assigned to."""

    id: int
    name: str
    description: str = ""


#: A token's worker and the worker's teams in one statement (a row per team; one row with
#: no team when it has none): every API request runs it, so it is one round trip.
_TOKEN_WORKER = (sa.select(workers.c.id, workers.c.name, workers.c.role, workers.c.active,
                           credentials.c.expires_at, credentials.c.used_at,
                           teams.c.name.label("team"))
                 .select_from(credentials.join(workers, credentials.c.worker_id == workers.c.id)
                              .outerjoin(team_members, team_members.c.worker_id == workers.c.id)
                              .outerjoin(teams, teams.c.id == team_members.c.team_id))
                 .where(credentials.c.digest == sa.bindparam("b_digest"),
                        credentials.c.kind == "api_token"))


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id(token: str) -> str:
    """An API token's public id: the first 12 hex digits of its digest (safe to show)."""
    return _digest(token)[:12]


def hash_password(password: str) -> str:
    """scrypt hash with a random salt, as ``scrypt$n$r$p$salt$hash``."""
    if len(password) < 8:
        raise ConfigurationError("a password needs at least 8 characters", setting="password")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${key.hex()}"


@functools.cache
def _decoy_hash() -> str:
    """A hash of no one's password, checked for unknown names so that a sign-in costs the
    same whether or not the name exists."""
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str) -> bool:
    """Check a password against :func:`hash_password` output in constant time."""
    try:
        _, n, r, p, salt, key = stored.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                                   r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), key)




class Workforce:
    """Workers, teams and credentials in the metadata database."""

    def __init__(self, engine: sa.Engine) -> None:
        from loopworks.labeling.signin import SignInThrottle

        self.engine = engine
        self.throttle = SignInThrottle(engine)
        self._last_use: dict[str, float] = {}
        self._last_use_lock = threading.Lock()

    # ------------------------------------------------------------------ teams
    def add_team(self, name: str, description: str = "") -> Team:
        """Create a team; ConflictError if the name is taken."""
        _check_name(name, "team")
        try:
            with self.engine.begin() as conn:
                key = conn.execute(teams.insert().values(
                    name=name, description=description)).inserted_primary_key
                assert key is not None
                team_id = key[0]
        except sa.exc.IntegrityError:
            raise ConflictError(f"team {name!r} already exists", team=name) from None
        return Team(int(team_id), name, description)

    def teams(self) -> list[Team]:
        """All teams by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(teams).order_by(teams.c.name)).all()
        return [Team(r.id, r.name, r.description) for r in rows]

    def team(self, name: str) -> Team:
        """One team by name; NotFoundError names the known teams."""
        for team in self.teams():
            if team.name == name:
                return team
        raise NotFoundError(f"no team {name!r} (see `loopworks team list`)", team=name)

    def members(self, team: str) -> list[Worker]:
        """Workers of a team."""
        team_id = self.team(team).id
        with self.engine.connect() as conn:
            ids = conn.execute(sa.select(team_members.c.worker_id).where(
                team_members.c.team_id == team_id)).scalars().all()
        return [self.worker_by_id(i) for i in ids]

    # ---------------------------------------------------------------- workers
    def add_worker(self, name: str, role: Role | str = Role.ANNOTATOR, *,
                   teams_: list[str] | tuple[str, ...] = (), password: str | None = None
                   ) -> Worker:
        """Create a worker in the given teams (which must exist)."""
        _check_name(name, "worker")
        try:
            role = Role(role)
        except ValueError:
            raise ConfigurationError(
                f"unknown role {role!r}; choose admin, annotator or reviewer",
                setting="role", valid_values=[r.value for r in Role]) from None
        team_ids = [self.team(t).id for t in teams_]
        try:
            with self.engine.begin() as conn:
                key = conn.execute(workers.insert().values(
                    name=name, role=role.value, active=True, created_at=utcnow(),
                    password_hash=hash_password(password) if password else None,
                )).inserted_primary_key
                assert key is not None
                worker_id = key[0]
                for team_id in team_ids:
                    conn.execute(team_members.insert().values(team_id=team_id,
                                                              worker_id=worker_id))
        except sa.exc.IntegrityError:
            raise ConflictError(f"worker {name!r} already exists", worker=name) from None
        return self.worker_by_id(int(worker_id))

    def add_to_team(self, worker: str, team: str) -> None:
        """Put an existing worker in a team (no error if already there)."""
        worker_id, team_id = self.worker(worker).id, self.team(team).id
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(team_members).where(
                team_members.c.team_id == team_id,
                team_members.c.worker_id == worker_id)).first()
            if not exists:
                conn.execute(team_members.insert().values(team_id=team_id, worker_id=worker_id))

    def workers(self) -> list[Worker]:
        """All workers by name."""
        with self.engine.connect() as conn:
            ids = conn.execute(sa.select(workers.c.id).order_by(workers.c.name)).scalars().all()
        return [self.worker_by_id(i) for i in ids]

    def worker(self, name: str) -> Worker:
        """One worker by name."""
        with self.engine.connect() as conn:
            worker_id = conn.execute(sa.select(workers.c.id).where(
                workers.c.name == name)).scalar()
        if worker_id is None:
            raise NotFoundError(f"no worker {name!r} (see `loopworks worker list`)",
                                worker=name)
        return self.worker_by_id(worker_id)

    def worker_by_id(self, worker_id: int) -> Worker:
        """One worker by id, with team names."""
        from loopworks.metadata import READ_ONLY

        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(sa.select(workers).where(workers.c.id == worker_id)).first()
            if row is None:
                raise NotFoundError(f"no worker with id {worker_id}", worker_id=worker_id)
            names = conn.execute(
                sa.select(teams.c.name).join(team_members, team_members.c.team_id == teams.c.id)
                .where(team_members.c.worker_id == worker_id).order_by(teams.c.name)
            ).scalars().all()
        return Worker(row.id, row.name, Role(row.role), tuple(names), bool(row.active))

    def deactivate(self, name: str) -> None:
        """Stop a worker from signing in or using tokens, and end their browser sessions
        (their answers stay)."""
        worker_id = self.worker(name).id
        with self.engine.begin() as conn:
            conn.execute(workers.update().where(workers.c.id == worker_id).values(active=False))
            conn.execute(credentials.delete().where(credentials.c.worker_id == worker_id,
                                                    credentials.c.kind == "session"))

    # ------------------------------------------------------------ credentials
    def issue_api_token(self, worker: str, expires_in: timedelta | None = None) -> str:
        """A new API token for the worker, valid until revoked or for ``expires_in``.
        Shown once: only its digest is stored (its id is :func:`token_id` of it)."""
        if expires_in is not None and expires_in <= timedelta(0):
            raise ConfigurationError("a token's lifetime must be positive", setting="expires")
        return self._issue(self.worker(worker).id, "api_token",
                           utcnow() + expires_in if expires_in is not None else None)

    def api_tokens(self, worker: str) -> list[ApiToken]:
        """The worker's API tokens (ids, dates, last use), oldest first."""
        me = self.worker(worker)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(credentials).where(
                credentials.c.worker_id == me.id, credentials.c.kind == "api_token")
                .order_by(credentials.c.created_at)).all()
        return [ApiToken(r.digest[:12], me.name, r.created_at,
                         r.expires_at, r.used_at) for r in rows]

    def revoke_api_token(self, worker: str, token_id: str) -> None:
        """End one API token of the worker, by its id (``loopworks worker token NAME``).

        Raises:
            NotFoundError: The worker has no token with that id.
        """
        me = self.worker(worker)
        if not re.fullmatch(r"[0-9a-f]{6,64}", token_id or ""):
            raise NotFoundError(f"no API token {token_id!r} of worker {worker!r}",
                                worker=worker, token=token_id)
        mine = sa.and_(credentials.c.worker_id == me.id, credentials.c.kind == "api_token",
                       credentials.c.digest.startswith(token_id, autoescape=True))
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(sa.func.count()).select_from(credentials)
                                 .where(mine)).scalar_one()
            if found == 1:
                conn.execute(credentials.delete().where(mine))
        if found == 0:
            raise NotFoundError(f"no API token {token_id!r} of worker {worker!r} (see "
                                f"`loopworks worker token {worker}`)", worker=worker,
                                token=token_id)
        if found > 1:
            raise ConfigurationError(f"token id {token_id!r} names {found} tokens; give "
                                     "more of it", setting="token")

    def issue_login_link(self, worker: str, valid_for: timedelta = timedelta(days=7)) -> str:
        """A one-time login secret (put it in a link); it expires and works once."""
        return self._issue(self.worker(worker).id, "login_link", utcnow() + valid_for)

    def _issue(self, worker_id: int, kind: str, expires: datetime | None) -> str:
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(credentials.insert().values(
                digest=_digest(secret), worker_id=worker_id, kind=kind, created_at=utcnow(),
                expires_at=expires))
        return secret

    def authenticate_token(self, token: str) -> Worker:
        """The active worker a live API token belongs to, else PermissionDenied.

        Every API request comes through here, so it is one short read with one prebuilt
        statement; the token's last use is written off the request, at most once a
        minute per token.
        """
        from loopworks.metadata import READ_ONLY

        digest = _digest(token)
        # A read: on SQLite it neither waits for nor takes the write lock.
        with self.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
            rows = conn.execute(_TOKEN_WORKER, {"b_digest": digest}).all()
        if not rows:
            raise PermissionDenied("unknown credentials")
        row = rows[0]
        names = tuple(sorted(r.team for r in rows if r.team is not None))
        now = utcnow()
        expires = row.expires_at
        if expires is not None and expires <= now:
            raise PermissionDenied("this API token has expired")
        if not row.active:
            raise PermissionDenied("this worker is deactivated")
        used = row.used_at
        if used is None or now - used >= LAST_USE_EVERY:
            self._note_use(digest, now)
        return Worker(row.id, row.name, Role(row.role), names, bool(row.active))

    def _note_use(self, digest: str, now: datetime) -> None:
        """Record a token's use on a thread of its own (a write must not hold up the
        request), at most once a minute per token from this process."""
        tick = time.monotonic()
        with self._last_use_lock:
            if tick - self._last_use.get(digest, -1e9) < LAST_USE_EVERY.total_seconds():
                return
            self._last_use[digest] = tick

        def write() -> None:
            from loopworks.labeling.transactions import transaction

            try:
                with transaction(self.engine) as conn:
                    conn.execute(credentials.update().where(credentials.c.digest == digest)
                                 .values(used_at=now))
            except sa.exc.SQLAlchemyError:
                pass  # the database went away (a test's temp home); the use is not recorded

        threading.Thread(target=write, name="loopworks-token-use", daemon=True).start()

    # --------------------------------------------------------------- sessions
    def start_session(self, worker: Worker, lifetime: timedelta = SESSION_LIFETIME) -> str:
        """A new browser session for the worker; returns its id (a secret: only its digest
        is stored)."""
        return self._issue(worker.id, "session", utcnow() + lifetime)

    def session_worker(self, session_id: str) -> Worker:
        """The active worker of a live session, else PermissionDenied (ended, expired,
        unknown, or the worker was deactivated)."""
        from loopworks.metadata import READ_ONLY

        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(sa.select(credentials.c.worker_id, credentials.c.expires_at)
                               .where(credentials.c.digest == _digest(session_id),
                                      credentials.c.kind == "session")).first()
        expires = row.expires_at if row is not None else None
        if row is None or (expires is not None and expires <= utcnow()):
            raise PermissionDenied("this session has ended; sign in again")
        return self._active(row)

    def end_session(self, session_id: str) -> None:
        """End a browser session (sign-out): its cookie no longer works anywhere."""
        with self.engine.begin() as conn:
            conn.execute(credentials.delete().where(
                credentials.c.digest == _digest(session_id), credentials.c.kind == "session"))
            conn.execute(credentials.delete().where(  # and tidy up expired ones
                credentials.c.kind == "session", credentials.c.expires_at < utcnow()))

    def redeem_login_link(self, secret: str) -> Worker:
        """Use a one-time login link: valid once, before it expires."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(credentials).where(
                credentials.c.digest == _digest(secret),
                credentials.c.kind == "login_link")).first()
            expires = row.expires_at if row is not None else None
            if row is None or row.used_at is not None or \
                    (expires is not None and expires < now):
                raise PermissionDenied("this login link is unknown, used or expired")
            updated = conn.execute(credentials.update().where(
                credentials.c.digest == row.digest, credentials.c.used_at.is_(None)
            ).values(used_at=now))
            if updated.rowcount != 1:  # someone else redeemed it at the same moment
                raise PermissionDenied("this login link is unknown, used or expired")
        return self._active(row)

    def authenticate_password(self, name: str, password: str, *,
                              address: str | None = None) -> Worker:
        """Check a worker's password; PermissionDenied on any mismatch (says no more).

        Unknown names cost the same scrypt work as known ones, and failures are throttled
        per name and per client ``address`` (:mod:`loopworks.labeling.signin`).

        Raises:
            RateLimited: Too many failures for this name or address lately.
            PermissionDenied: Wrong name or password, or a deactivated worker.
        """
        now = utcnow()
        keys = throttle_keys(name, address)
        self.throttle.check(keys, now)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(workers.c.id, workers.c.password_hash).where(
                workers.c.name == name)).first()
        stored = row.password_hash if row is not None and row.password_hash else None
        matches = verify_password(password, stored or _decoy_hash())
        if row is None or stored is None or not matches:
            self.throttle.failed(keys, now)
            raise PermissionDenied("wrong worker name or password")
        self.throttle.succeeded(keys)
        worker = self.worker_by_id(row.id)
        if not worker.active:
            raise PermissionDenied("this worker is deactivated")
        return worker

    def _active(self, row: sa.Row | None) -> Worker:
        if row is None:
            raise PermissionDenied("unknown credentials")
        worker = self.worker_by_id(row.worker_id)
        if not worker.active:
            raise PermissionDenied("this worker is deactivated")
        return worker


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"invalid {what} name {name!r}: 1-63 letters, digits, '_', '.', '@' or '-'",
            setting=what)
