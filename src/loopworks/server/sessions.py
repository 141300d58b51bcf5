"""Browser sessions for the pages: a signed cookie, CSRF tokens, and who is signed in.

The session cookie (Starlette's ``SessionMiddleware``, signed with itsdangerous) holds a
session id and a CSRF token. The session itself lives in the metadata database
(:meth:`~loopworks.labeling.workforce.Workforce.start_session`) and is checked on every
request, so signing out or deactivating the worker ends it on the server: a copied cookie
stops working at once, in every server process. It is HttpOnly and SameSite=Lax, and Secure
when the server is reached over HTTPS (the ``public_url`` setting starts with ``https://``,
or the ``secure_cookies`` setting is true). The signing key is the ``secret_key`` setting or
a random key kept in ``$LOOPWORKS_HOME/secret_key`` (mode 0600), so every server process of
one home shares it and sessions survive a restart.

Every state-changing form carries the session's CSRF token; :func:`check_csrf` compares
it in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from fastapi import Request

from loopworks.errors import NotFoundError, PermissionDenied
from loopworks.labeling.workforce import SESSION_LIFETIME, Worker
from loopworks.server.state import services
from loopworks.settings import Settings, load_settings, server_secret

__all__ = ["LoginRequired", "check_csrf", "csrf_token", "page_worker", "secret_key",
           "secure_cookies", "sign_in", "sign_out"]

SESSION_SECONDS = int(SESSION_LIFETIME.total_seconds())


class LoginRequired(Exception):
    """Raised by page routes for anonymous visitors; answered with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def secret_key(home: Path, settings: Settings | None = None) -> str:
    """The cookie-signing key: the ``secret_key`` setting, else one kept under the home.

    Args:
        home: The loopworks home (where a random key is kept).
        settings: The settings to use (default: those of ``home``).

    Returns:
        The key.
    """
    return server_secret(settings or load_settings(home=home))


def secure_cookies(settings: Settings | None = None) -> bool:
    """Whether the session cookie is marked Secure (the server is reached over HTTPS).

    Args:
        settings: The settings to use (default: :func:`~loopworks.settings.load_settings`).

    Returns:
        The ``secure_cookies`` setting (by default true when ``public_url`` is https).
    """
    return (settings or load_settings()).secure_cookies


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a form whose token does not match the session's (403)."""
    expected = request.session.get("csrf")
    if not expected or not submitted or not hmac.compare_digest(str(expected), submitted):
        raise PermissionDenied("the form's security token is missing or stale; reload the "
                               "page and try again")


def sign_in(request: Request, worker: Worker) -> None:
    """Start a fresh server-side session for the worker (a new id and CSRF token: no
    fixation)."""
    sign_out(request)
    workforce = services(request).workforce
    request.session["sid"] = workforce.start_session(worker)
    request.session["csrf"] = secrets.token_urlsafe(32)


def sign_out(request: Request) -> None:
    """End the session on the server and forget the cookie's contents."""
    sid = request.session.get("sid")
    if isinstance(sid, str) and sid:
        services(request).workforce.end_session(sid)
    request.session.clear()


def page_worker(request: Request) -> Worker:
    """The signed-in worker, or :class:`LoginRequired` for anonymous or ended sessions."""
    sid = request.session.get("sid")
    if sid is not None:
        workforce = services(request).workforce
        try:
            worker: Worker = workforce.session_worker(str(sid))
        except (PermissionDenied, NotFoundError):  # ended, expired, deactivated, deleted
            pass
        else:
            return worker
        request.session.clear()
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise LoginRequired(target)
