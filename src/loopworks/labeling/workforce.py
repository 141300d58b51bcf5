"""The workforce: workers with roles, teams, API tokens, one-time login links, passwords.

Secrets are never stored: API tokens and login links are kept as SHA-256 digests (they are
long random strings), passwords as scrypt hashes with a per-password salt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa

from loopworks.errors import ConfigurationError, ConflictError, NotFoundError, PermissionDenied

__all__ = ["Role", "Team", "Worker", "Workforce", "hash_password", "verify_password"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


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
class Team:
    """A group of workers that jobs and review flows are assigned to."""

    id: int
    name: str
    description: str = ""


_meta = sa.MetaData()
workers = sa.Table(
    "workers", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
teams = sa.Table(
    "teams", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
)
team_members = sa.Table(
    "team_members", _meta,
    sa.Column("team_id", sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True),
)
credentials = sa.Table(
    "credentials", _meta,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.ForeignKey("workers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # api_token | login_link
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
)


_TOKEN_WORKER = sa.select(workers.c.id, workers.c.name, workers.c.role, workers.c.active).join(
    credentials, credentials.c.worker_id == workers.c.id).where(
    credentials.c.digest == sa.bindparam("b_digest"), credentials.c.kind == "api_token")
_WORKER_TEAMS = sa.select(teams.c.name).join(
    team_members, team_members.c.team_id == teams.c.id).where(
    team_members.c.worker_id == sa.bindparam("b_worker")).order_by(teams.c.name)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    """scrypt hash with a random salt, as ``scrypt$n$r$p$salt$hash``."""
    if len(password) < 8:
        raise ConfigurationError("a password needs at least 8 characters", setting="password")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Check a password against :func:`hash_password` output in constant time."""
    try:
        _, n, r, p, salt, key = stored.split("$")
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n),
                                   r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), key)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive; they were written in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Workforce:
    """Workers, teams and credentials in the metadata database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        _meta.create_all(engine)

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
                    name=name, role=role.value, active=True, created_at=_now(),
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
        """Stop a worker from signing in or using tokens (their answers stay)."""
        with self.engine.begin() as conn:
            conn.execute(workers.update().where(workers.c.name == name).values(active=False))

    # ------------------------------------------------------------ credentials
    def issue_api_token(self, worker: str) -> str:
        """A new API token for the worker. Shown once: only its digest is stored."""
        return self._issue(self.worker(worker).id, "api_token", None)

    def issue_login_link(self, worker: str, valid_for: timedelta = timedelta(days=7)) -> str:
        """A one-time login secret (put it in a link); it expires and works once."""
        return self._issue(self.worker(worker).id, "login_link", _now() + valid_for)

    def _issue(self, worker_id: int, kind: str, expires: datetime | None) -> str:
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(credentials.insert().values(
                digest=_digest(secret), worker_id=worker_id, kind=kind, created_at=_now(),
                expires_at=expires))
        return secret

    def authenticate_token(self, token: str) -> Worker:
        """The active worker an API token belongs to, else PermissionDenied.

        Every API request comes through here, so it is one short transaction with two
        prebuilt statements.
        """
        from loopworks.metadata import READ_ONLY

        # A read: on SQLite it neither waits for nor takes the write lock.
        with self.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
            row = conn.execute(_TOKEN_WORKER, {"b_digest": _digest(token)}).first()
            if row is None:
                raise PermissionDenied("unknown credentials")
            names = tuple(conn.execute(_WORKER_TEAMS, {"b_worker": row.id}).scalars())
        if not row.active:
            raise PermissionDenied("this worker is deactivated")
        return Worker(row.id, row.name, Role(row.role), names, bool(row.active))

    def redeem_login_link(self, secret: str) -> Worker:
        """Use a one-time login link: valid once, before it expires."""
        now = _now()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(credentials).where(
                credentials.c.digest == _digest(secret),
                credentials.c.kind == "login_link")).first()
            expires = _aware(row.expires_at) if row is not None else None
            if row is None or row.used_at is not None or \
                    (expires is not None and expires < now):
                raise PermissionDenied("this login link is unknown, used or expired")
            updated = conn.execute(credentials.update().where(
                credentials.c.digest == row.digest, credentials.c.used_at.is_(None)
            ).values(used_at=now))
            if updated.rowcount != 1:  # someone else redeemed it at the same moment
                raise PermissionDenied("this login link is unknown, used or expired")
        return self._active(row)

    def authenticate_password(self, name: str, password: str) -> Worker:
        """Check a worker's password; PermissionDenied on any mismatch (says no more)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(workers).where(workers.c.name == name)).first()
        if row is None or not row.password_hash or \
                not verify_password(password, row.password_hash):
            raise PermissionDenied("wrong worker name or password")
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
