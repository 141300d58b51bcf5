"""The app's state, typed: every route reaches the services through :func:`services`.

``create_app`` keeps one :class:`~loopworks.services.Loopworks` on ``app.state.loopworks``
(and the server's own API token beside it); nothing else lives there, so a reader (and mypy)
can follow a route to the domain code it calls.
"""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI, Request

from loopworks.services import Loopworks

__all__ = ["api_token_of", "api_token", "services", "services_of"]


def services_of(app: FastAPI) -> Loopworks:
    """The services an app was built on."""
    return cast(Loopworks, app.state.loopworks)


def services(request: Request) -> Loopworks:
    """The services of the app serving ``request``."""
    return cast(Loopworks, request.app.state.loopworks)


def api_token_of(app: FastAPI) -> str:
    """The server's own API token, from the app itself (middleware that runs before routing)."""
    return cast(str, app.state.api_token)


def api_token(request: Request) -> str:
    """The server's own API token (the ``api_token`` setting, or one made at start)."""
    return cast(str, request.app.state.api_token)
