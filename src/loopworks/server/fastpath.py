"""The online feature reads, answered ahead of the app: the requests users send most.

``GET /api/feature-groups/{name}/records/{id}`` (with optional ``feature=`` parameters) and
``POST .../records/batch-get`` are lookups of tens of microseconds; routing, dependency
injection, validation and encoding in the framework cost many times that. :class:`FeatureReads`
answers a successful read itself, with the same checks (a bearer token of an admin or the
server's own token) and the same bytes and headers as the routes in
:mod:`loopworks.server.app`. Everything else, every error included, goes on to the app (a
batch's body handed on as it came), which answers it in its usual shape, so the two can never
disagree on a refusal.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopworks.errors import LoopworksError
from loopworks.labeling.workforce import Role
from loopworks.server.state import api_token_of, services_of

__all__ = ["FeatureReads", "encode_json"]

_PREFIX = "/api/feature-groups/"
_HEADERS = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]
_MAX_BATCH_BODY = 1 << 20  # larger batches go through the route
_MAX_IDS = 10_000  # as BatchGetRequest


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_json(value: Any) -> bytes:
    """JSON bytes of records as the API sends them (times in ISO 8601, arrays as lists)."""
    return orjson.dumps(value, default=_default,
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class FeatureReads:
    """ASGI middleware: serve the online record read directly, pass everything else on."""

    def __init__(self, inner: ASGIApp, app: FastAPI) -> None:
        self.inner = inner
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_PREFIX):
            answer: bytes | None = None
            if scope["method"] == "GET":
                answer = self._answer(scope)
            elif scope["method"] == "POST" and scope["path"].endswith("/records/batch-get"):
                body, receive = await _buffered(receive)
                if body is not None:
                    answer = self._batch(scope, body)
            if answer is not None:
                await send({"type": "http.response.start", "status": 200, "headers": [
                    *_HEADERS, (b"content-length", str(len(answer)).encode())]})
                await send({"type": "http.response.body", "body": answer})
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
        if not self._allowed(scope):
            return None
        try:
            record = services_of(self.app).features.feature_group(parts[0]).get_record(
                parts[2], features or None)
        except (LoopworksError, UnicodeError):
            return None
        return None if record is None else encode_json(record)

    def _batch(self, scope: Scope, body: bytes) -> bytes | None:
        """``{"records": [...]}`` for a well-formed batch, or None (the route decides)."""
        parts = scope["path"][len(_PREFIX):].split("/")
        if len(parts) != 3 or not parts[0] or scope.get("query_string"):
            return None
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(request, dict) or not set(request) <= {"ids", "features"}:
            return None
        ids, features = request.get("ids"), request.get("features")
        if not isinstance(ids, list) or len(ids) > _MAX_IDS \
                or not all(type(i) is str for i in ids):
            return None
        if features is not None and not (isinstance(features, list)
                                         and all(type(f) is str for f in features)):
            return None
        if not self._allowed(scope):
            return None
        try:
            records = services_of(self.app).features.feature_group(parts[0]).batch_get_record(
                ids, features)
        except (LoopworksError, UnicodeError):
            return None
        return encode_json({"records": records})

    def _allowed(self, scope: Scope) -> bool:
        """Whether the bearer token is the server's own or an admin's."""
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return False
                break
        if not token:
            return False
        if hmac.compare_digest(token.encode(), api_token_of(self.app).encode()):
            return True
        try:
            return services_of(self.app).workforce.authenticate_token(token).role is Role.ADMIN
        except (LoopworksError, UnicodeError):
            return False


async def _buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read a request's body (None when it is too large to take here) and a ``receive``
    that hands the same messages on to the app."""
    messages: list[Message] = []
    size, more = 0, True
    while more:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
        if size > _MAX_BATCH_BODY:
            break
    replay = list(messages)

    async def replayed() -> Message:
        return replay.pop(0) if replay else await receive()

    if more or messages[-1]["type"] != "http.request":
        return None, replayed
    return b"".join(m.get("body", b"") for m in messages), replayed
