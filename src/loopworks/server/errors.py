"""Domain errors meet HTTP here, and only here: the status of each error, how it is
rendered, and how the OpenAPI schema documents it (:func:`error_responses`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from loopworks.errors import (
    ConfigurationError,
    ConflictError,
    InputError,
    LoopworksError,
    NotFoundError,
    PermissionDenied,
    RateLimited,
    ValidationError,
)
from loopworks.server.sessions import LoginRequired

__all__ = ["ERROR_RESPONSES", "STATUS", "ApiError", "ErrorBody", "PlainError",
           "error_responses", "install_error_handlers"]

STATUS: list[tuple[type[LoopworksError], int]] = [
    (RateLimited, 429),
    (PermissionDenied, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ValidationError, 422),
    (ConfigurationError, 422),
    (InputError, 422),
    (LoopworksError, 400),
]


class ApiError(BaseModel):
    """A domain error: its class, what went wrong, and where (the error's fields)."""

    type: str = Field(description="the error's class, e.g. NotFoundError")
    message: str = Field(description="what went wrong and what to do next")
    fields: dict[str, str | int | float | bool | None] = Field(
        description="where it went wrong: the job, feature group, setting...")


class ErrorBody(BaseModel):
    """How the JSON API answers a domain error (403, 404, 409, 422)."""

    error: ApiError


class PlainError(BaseModel):
    """FastAPI's own answer, before any handler runs: a body that cannot be parsed (400), a
    missing, unknown or revoked bearer token (401)."""

    detail: str


class RequestIssue(BaseModel):
    """One thing wrong with a request's shape (FastAPI's validation, before any handler)."""

    loc: list[str | int]
    msg: str
    type: str


class RequestErrors(BaseModel):
    """A request whose parameters or body do not match the schema (422, from FastAPI)."""

    detail: list[RequestIssue]


def _documented(description: str, model: Any, **extra: Any) -> dict[str, Any]:
    return {"description": description, "model": model, **extra}


#: Every error status the JSON API answers with, documented once. Routers and routes pick
#: theirs with :func:`error_responses`; 5xx is never documented: it is always a bug.
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: _documented("A body that cannot be parsed (not UTF-8, or nested too deeply)",
                     PlainError),
    401: _documented("No bearer token, or one that is unknown, expired or revoked",
                     PlainError, headers={"WWW-Authenticate": {
                         "description": "Bearer", "schema": {"type": "string"}}}),
    403: _documented("The caller's role or teams may not do this", ErrorBody),
    404: _documented("No such job, item, flow, loop, feature group, feature or record",
                     ErrorBody),
    409: _documented("The request conflicts with the current state (a job or loop that is "
                     "not in progress, a name that exists, an expired lease)", ErrorBody),
    422: _documented("A parameter or body that does not match the schema (FastAPI's "
                     "`detail` list) or that the domain refuses (`error`)",
                     ErrorBody | RequestErrors),
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses for ``codes``, for a router's or a route's
    ``responses=`` (FastAPI merges a router's with its routes')."""
    return {code: ERROR_RESPONSES[code] for code in codes}


def _json_safe(fields: dict[str, object]) -> dict[str, object]:
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else str(v)
            for k, v in fields.items()}


def install_error_handlers(app: FastAPI) -> None:
    """Render every LoopworksError as ``{"error": {type, message, fields}}`` with its status."""

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    @app.exception_handler(LoopworksError)
    async def _handle(request: Request, exc: LoopworksError) -> Response:
        status = next(code for cls, code in STATUS if isinstance(exc, cls))
        headers = {"Retry-After": str(exc.fields["retry_after"])} \
            if "retry_after" in exc.fields else None
        if not request.url.path.startswith("/api/"):
            from loopworks.server.pages import render

            title = {403: "Not allowed", 404: "Not found", 409: "Conflict",
                     429: "Too many attempts"}.get(status, "Something is wrong")
            response: Response = render(request, "error.html", status_code=status,
                                        status=status, title=title, message=str(exc), me=None)
            if headers:
                response.headers.update(headers)
            return response
        return JSONResponse(status_code=status, headers=headers, content={"error": {
            "type": type(exc).__name__, "message": str(exc), "fields": _json_safe(exc.fields)}})
