"""AWS access keys for workers: what boto3 and the SageMaker SDK sign their requests with.

``loopworks worker aws-keys NAME`` issues a pair. The key id (``LW`` and 18 letters and
digits, like AWS's ``AKIA...``) is stored with its worker; the secret is never stored: it is
derived from the key id and the server's own secret (:func:`loopworks.settings.server_secret`)
with HMAC-SHA256, so a copy of the database holds nothing that signs a request, and every
server process of a deployment derives the same secret. Revoking a key deletes its row;
deactivating its worker stops it too. A key acts as its worker, with the worker's role.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConflictError, NotFoundError, PermissionDenied
from loopworks.labeling.workforce import Role, Worker, Workforce
from loopworks.metadata import READ_ONLY
from loopworks.metadata.tables import credentials, team_members, teams, workers

__all__ = ["KEY_ID_PATTERN", "AccessKey", "AccessKeys", "check_deployment_secret",
           "derive_secret"]

#: An access key id: "LW" and 18 base-32 letters and digits (20 characters, as AWS's).
KEY_ID_PATTERN = re.compile(r"LW[A-Z2-7]{18}")
_KIND = "aws_key"
#: One statement per signed request, built once: the key, its worker and the worker's teams,
#: read fresh each time, so a revocation or a deactivation holds at once in every process.
_RESOLVE = (sa.select(workers.c.id, workers.c.name, workers.c.role, workers.c.active,
                      teams.c.name.label("team"))
            .select_from(credentials.join(workers, workers.c.id == credentials.c.worker_id)
                         .outerjoin(team_members, team_members.c.worker_id == workers.c.id)
                         .outerjoin(teams, teams.c.id == team_members.c.team_id))
            .where(credentials.c.digest == sa.bindparam("key_id"), credentials.c.kind == _KIND))


def derive_secret(master_key: str, key_id: str) -> str:
    """The secret access key of ``key_id``: 40 characters, as AWS's."""
    mac = hmac.new(master_key.encode(), f"loopworks-aws-key:{key_id}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()[:40]


def check_deployment_secret(engine: sa.Engine, master_key: str) -> None:
    """Refuse a server secret other than the one this database's servers use.

    The first server to start records a fingerprint of its secret in the database (an HMAC
    of a fixed text: the secret cannot be recovered from it). A process with another secret
    would sign sessions the others reject and derive AWS secret keys that do not match: a
    second machine started without the deployment's ``secret_key`` setting (each home makes
    its own random one). It is stopped here, at start, with what to set.

    Raises:
        ConfigurationError: The database's servers use another secret.
    """
    from loopworks.errors import ConfigurationError
    from loopworks.labeling.resources import Resources

    fingerprint = hmac.new(master_key.encode(), b"loopworks-deployment-secret",
                           hashlib.sha256).hexdigest()
    resources = Resources(engine)
    try:
        known = resources.get("deployment", "secret_key").document["fingerprint"]
    except NotFoundError:
        try:
            resources.create("deployment", "secret_key", {"fingerprint": fingerprint})
            return
        except ConflictError:  # another server recorded its own a moment ago
            known = resources.get("deployment", "secret_key").document["fingerprint"]
    if not hmac.compare_digest(known, fingerprint):
        raise ConfigurationError(
            "this server's secret key is not the one the other servers of this metadata "
            "database use (sessions and AWS keys would not work across them): set the "
            "secret_key setting (LOOPWORKS_SECRET_KEY) to the deployment's, the same on "
            "every machine", setting="secret_key")


@dataclass(frozen=True)
class AccessKey:
    """What is shown of a key (never its secret)."""

    key_id: str
    worker: str
    created_at: datetime


class AccessKeys:
    """Issue, list, revoke and resolve workers' AWS access keys.

    Args:
        workforce: The workers the keys belong to.
        master_key: The server's secret the key secrets are derived from.
    """

    def __init__(self, workforce: Workforce, master_key: str) -> None:
        self.workforce = workforce
        self._master_key = master_key

    def issue(self, worker: str) -> tuple[str, str]:
        """A new key pair for an active worker: (access key id, secret access key).

        Raises:
            ConfigurationError: This process's secret is not the deployment's (the pair
                would not work against its servers).
        """
        check_deployment_secret(self.workforce.engine, self._master_key)
        me = self.workforce.worker(worker)
        if not me.active:
            raise PermissionDenied(f"worker {worker!r} is deactivated", worker=worker)
        key_id = "LW" + base64.b32encode(secrets.token_bytes(12)).decode()[:18]
        with self.workforce.engine.begin() as conn:
            conn.execute(credentials.insert().values(
                digest=key_id, worker_id=me.id, kind=_KIND, created_at=utcnow()))
        return key_id, derive_secret(self._master_key, key_id)

    def keys(self, worker: str) -> list[AccessKey]:
        """The worker's live keys, oldest first."""
        me = self.workforce.worker(worker)
        with self.workforce.engine.connect() as conn:
            rows = conn.execute(sa.select(credentials.c.digest, credentials.c.created_at).where(
                credentials.c.worker_id == me.id, credentials.c.kind == _KIND)
                .order_by(credentials.c.created_at)).all()
        return [AccessKey(r.digest, me.name, r.created_at) for r in rows]

    def revoke(self, worker: str, key_id: str) -> None:
        """End one key of the worker: requests signed with it are refused from now on.

        Raises:
            NotFoundError: The worker has no such key.
        """
        me = self.workforce.worker(worker)
        with self.workforce.engine.begin() as conn:
            gone = conn.execute(credentials.delete().where(
                credentials.c.digest == key_id, credentials.c.worker_id == me.id,
                credentials.c.kind == _KIND)).rowcount
        if not gone:
            raise NotFoundError(f"worker {worker!r} has no access key {key_id!r} (see "
                                f"`loopworks worker aws-keys {worker} --list`)",
                                worker=worker, key=key_id)

    def resolve(self, key_id: str) -> tuple[Worker, str]:
        """The active worker a live key belongs to, and the key's secret (to check a
        signature with).

        Raises:
            PermissionDenied: Unknown or revoked key, or a deactivated worker.
        """
        if not KEY_ID_PATTERN.fullmatch(key_id or ""):
            raise PermissionDenied("unknown access key")
        with self.workforce.engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execute(_RESOLVE, {"key_id": key_id}).all()
        if not rows:
            raise PermissionDenied("unknown access key")
        first = rows[0]
        if not first.active:
            raise PermissionDenied("this worker is deactivated")
        worker = Worker(first.id, first.name, Role(first.role),
                        tuple(sorted(r.team for r in rows if r.team is not None)), True)
        return worker, derive_secret(self._master_key, key_id)
