"""Who is asking: a bearer token on every API route.

Until the workforce (users, roles, sessions) arrives, the server has one API token: the
``LOOPWORKS_API_TOKEN`` environment variable, or a random one printed once at start-up.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["require_token", "new_token"]

_bearer = HTTPBearer(auto_error=False)


def new_token() -> str:
    """A fresh random API token."""
    return secrets.token_urlsafe(32)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Reject the request (401) unless it carries the server's bearer token."""
    expected: str = request.app.state.api_token
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(),
                                                      expected.encode()):
        raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return "api-token"
