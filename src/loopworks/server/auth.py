"""Who is asking, and what they may do.

Every /api route takes a bearer token: the server's own token (``LOOPWORKS_API_TOKEN``, for
services and the operator; it acts as an admin) or a worker's API token from
``loopworks worker add``. Policies are small functions of the worker.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from loopworks.errors import PermissionDenied
from loopworks.labeling.workforce import Role, Worker
from loopworks.server.state import api_token, services

__all__ = ["SYSTEM", "current_worker", "new_token", "require_admin", "require_feature_reader"]

_bearer = HTTPBearer(auto_error=False)

#: The identity of requests made with the server's own token.
SYSTEM = Worker(id=0, name="system", role=Role.ADMIN)


def new_token() -> str:
    """A fresh random API token."""
    return secrets.token_urlsafe(32)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_worker(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Worker:
    """The worker behind the request's bearer token (401 when missing or unknown).

    Async on purpose: the check is one indexed read of a fraction of a millisecond, while
    handing each request to a worker thread and back costs milliseconds under load."""
    if credentials is None:
        raise _unauthorized("missing bearer token")
    token = credentials.credentials
    expected = api_token(request)
    if hmac.compare_digest(token.encode(), expected.encode()):
        return SYSTEM
    workforce = services(request).workforce
    try:
        return workforce.authenticate_token(token)
    except PermissionDenied:
        raise _unauthorized("unknown or revoked token") from None


async def require_feature_reader(worker: Annotated[Worker, Depends(current_worker)]) -> Worker:
    """Feature data is for admins (data scientists) and services, not for annotators."""
    if worker.role is not Role.ADMIN:
        raise PermissionDenied(f"worker {worker.name!r} ({worker.role.value}) may not read "
                               "feature groups", worker=worker.name)
    return worker


async def require_admin(worker: Annotated[Worker, Depends(current_worker)]) -> Worker:
    """Managing flows and starting human loops is for admins and services."""
    if worker.role is not Role.ADMIN:
        raise PermissionDenied(f"worker {worker.name!r} ({worker.role.value}) may not manage "
                               "review flows", worker=worker.name)
    return worker
