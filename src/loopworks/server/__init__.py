"""The web layer: one FastAPI app with a JSON API under /api (docs at /docs)."""

from __future__ import annotations

from loopworks.server.app import create_app

__all__ = ["create_app"]
