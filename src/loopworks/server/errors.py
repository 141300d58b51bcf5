"""Domain errors meet HTTP here, and only here."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

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

__all__ = ["install_error_handlers", "STATUS"]

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
