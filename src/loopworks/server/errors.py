"""Domain errors meet HTTP here, and only here."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from loopworks.errors import (
    ConfigurationError,
    ConflictError,
    InputError,
    LoopworksError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)

__all__ = ["install_error_handlers", "STATUS"]

STATUS: list[tuple[type[LoopworksError], int]] = [
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

    @app.exception_handler(LoopworksError)
    async def _handle(request: Request, exc: LoopworksError) -> JSONResponse:
        status = next(code for cls, code in STATUS if isinstance(exc, cls))
        return JSONResponse(status_code=status, content={"error": {
            "type": type(exc).__name__, "message": str(exc), "fields": _json_safe(exc.fields)}})
