"""The online feature read, answered ahead of the app: the request users send most.

``GET /api/feature-groups/{name}/records/{id}`` (with optional ``feature=`` parameters) is a
lookup of tens of microseconds; routing, dependency injection, validation and encoding in the
framework cost many times that. :class:`FeatureReads` answers the successful read itself, with
the same checks (a bearer token of an admin or the server's own token) and the same bytes and
headers as the route in :mod:`loopworks.server.app`. Everything else, every error included,
goes on to the app, which answers it in its usual shape, so the two can never disagree on a
refusal.
"""

from __future__ import annotations

import hmac
import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from loopworks.errors import LoopworksError
from loopworks.labeling.workforce import Role
from loopworks.server.state import api_token_of, services_of

__all__ = ["FeatureReads", "encode_json"]

_PREFIX = "/api/feature-groups/"
_HEADERS = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_json(value: Any) -> bytes:
    """JSON bytes of a record as the API sends it (times in ISO 8601, arrays as lists)."""
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


class FeatureReads:
    """ASGI middleware: serve the online record read directly, pass everything else on."""

    def __init__(self, inner: ASGIApp, app: FastAPI) -> None:
        self.inner = inner
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" \
                and scope["path"].startswith(_PREFIX):
            body = self._answer(scope)
            if body is not None:
                await send({"type": "http.response.start", "status": 200, "headers": [
                    *_HEADERS, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.inner(scope, receive, send)

    def _answer(self, scope: Scope) -> bytes | None:
        """The record's JSON, or None for anything but a plain successful read."""
        parts = scope["path"][len(_PREFIX):].split("/")
        if len(parts) != 3 or parts[1] != "records" or not parts[0] or not parts[2]:
            return None
        features: list[str] = []
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                    keep_blank_values=True):
            if key != "feature":
                return None
            features.append(value)
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return None
                break
        if not token:
            return None
        lw = services_of(self.app)
        try:
            if not hmac.compare_digest(token.encode(), api_token_of(self.app).encode()) \
                    and lw.workforce.authenticate_token(token).role is not Role.ADMIN:
                return None
            record = lw.features.feature_group(parts[0]).get_record(parts[2], features or None)
        except (LoopworksError, UnicodeError):
            return None
        return None if record is None else encode_json(record)
