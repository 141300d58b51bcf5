"""ASGI entry point for uvicorn (``loopworks.server.asgi:app``)."""

from __future__ import annotations

from loopworks.server.app import create_app

app = create_app()
