"""What the server promises browsers: ``X-Content-Type-Options: nosniff`` on every response,
and API docs at /docs that load nothing from another site.

FastAPI's own /docs page fetches Swagger UI from a CDN, unpinned, and starts it with an
inline script, so no Content-Security-Policy can guard it. Ours serves Swagger UI's files
from the ``swagger-ui-bundle-v2`` package (a dependency, never copied into this tree),
starts it with a script of our own (``static/docs/swagger-init.js``) and sends a policy
that lets scripts and styles come from this server only. /redoc is switched off.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopworks.errors import NotFoundError

__all__ = ["DOCS_CSP", "NoSniffMiddleware", "install_security", "outermost"]

#: The /docs page's policy: Swagger UI's script and style and our start-up script from
#: this server, its inline SVG icons as data: images, "Try it out" calls to this server.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")

_NOSNIFF = (b"x-content-type-options", b"nosniff")

# The Swagger UI files the page loads, and their types.
_SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_SWAGGER_PREFIX = "/docs/swagger-ui"
_INIT_SCRIPT = "/static/docs/swagger-init.js"  # served by the pages' /static mount


class NoSniffMiddleware:
    """Add ``X-Content-Type-Options: nosniff`` to every HTTP response.

    Plain ASGI rather than ``BaseHTTPMiddleware``: it touches only the response's first
    message, so the online read path pays for one header and no extra task or buffering.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the header to the response as it starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if all(name.lower() != _NOSNIFF[0] for name, _ in headers):
                    headers.append(_NOSNIFF)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


def install_security(app: FastAPI) -> None:
    """Send nosniff on every response and serve /docs offline under a strict policy.

    Stands in for FastAPI's CDN-backed /docs (create the app with ``docs_url=None,
    redoc_url=None``); the OpenAPI schema stays at ``app.openapi_url``.

    Args:
        app: The application, before it serves its first request.
    """
    outermost(app, NoSniffMiddleware)
    openapi_url = app.openapi_url
    if not openapi_url:  # no schema, nothing to document
        return

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        """Swagger UI for the JSON API, from this server's files only."""
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(_docs_page(app.title, root, openapi_url), headers={
            "Content-Security-Policy": DOCS_CSP, "X-Frame-Options": "DENY",
            "Cache-Control": "no-store"})

    @app.get(_SWAGGER_PREFIX + "/{name}", include_in_schema=False)
    async def swagger_file(name: str) -> FileResponse:
        """One of Swagger UI's files, from the installed package."""
        if name not in _SWAGGER_FILES:
            raise NotFoundError(f"no Swagger UI file {name!r}", file=name)
        return FileResponse(_swagger_ui_dir() / name, media_type=_SWAGGER_FILES[name])


def _docs_page(title: str, root: str, openapi_url: str) -> str:
    """The /docs page: no inline script or style, every URL on this server."""
    url = {key: html.escape(root + value, quote=True) for key, value in {
        "css": f"{_SWAGGER_PREFIX}/swagger-ui.css",
        "icon": f"{_SWAGGER_PREFIX}/favicon-32x32.png",
        "bundle": f"{_SWAGGER_PREFIX}/swagger-ui-bundle.js",
        "init": _INIT_SCRIPT,
        "openapi": openapi_url,
    }.items()}
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)} API docs</title>\n"
        f'<link rel="icon" type="image/png" href="{url["icon"]}">\n'
        f'<link rel="stylesheet" href="{url["css"]}">\n</head>\n<body>\n'
        f'<div id="swagger-ui" data-openapi-url="{url["openapi"]}"></div>\n'
        f'<script src="{url["bundle"]}"></script>\n'
        f'<script src="{url["init"]}"></script>\n</body>\n</html>\n')


def _swagger_ui_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def outermost(app: FastAPI, middleware: Callable[[ASGIApp], ASGIApp]) -> None:
    """Wrap the whole middleware stack. ``app.add_middleware`` would put it inside
    Starlette's ServerErrorMiddleware, so a 500 page would go out without the header (and
    a request it answers alone would still pass every layer)."""
    build = app.build_middleware_stack

    def build_wrapped() -> ASGIApp:
        return middleware(build())

    app.build_middleware_stack = build_wrapped  # type: ignore[method-assign]
