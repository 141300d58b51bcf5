"""Hooks: loopworks' stand-in for Ground Truth's pre-annotation and annotation-consolidation
Lambda functions.

A Ground Truth labeling job names two Lambda functions, ``PreHumanTaskLambdaArn`` and
``AnnotationConsolidationLambdaArn``, as ``arn:aws:lambda:REGION:ACCOUNT:function:NAME``
(optionally ``:QUALIFIER`` after NAME). In loopworks such an ARN resolves to the *hook*
registered under NAME (:func:`hook_name_of_arn`, :meth:`Hooks.get`). A hook is either a
Python function (``module:function``, run in the process that invokes it: the server's,
so the module must be importable there) or a URL that gets the event POSTed as JSON.

The events are Ground Truth's payloads; the caller builds them, this module only registers
and invokes hooks:

* pre-annotation, once per manifest line::

      {"version": "2018-10-16", "labelingJobArn": ..., "dataObject": {<the manifest line>}}

  answered with ``{"taskInput": {...}, "isHumanAnnotationRequired": "true"|"false"}``;

* annotation consolidation, once per batch of answers::

      {"version": "2018-10-16", "labelingJobArn": ..., "labelCategories": [...],
       "labelAttributeName": ..., "roleArn": ..., "payload": {"s3Uri": ...},
       "outputConfig": ...}

  answered with ``[{"datasetObjectId": ..., "consolidatedAnnotation": {"content": {...}}}]``.
  loopworks also puts the payload itself in the event (``payload.content``), so a hook
  need not read it back from the object store.

**Attempts.** Each attempt has the hook's timeout. A failed attempt (an exception, a
timeout, a non-2xx answer, an answer that is not JSON) is retried after
:data:`BACKOFF_SECONDS` up to the hook's ``retries`` more times; then :class:`HookError`
names the hook and the last failure. An address that is not allowed, or a Python hook that
cannot be imported any more, fails at once (trying again cannot help).

**Addresses.** A URL hook obeys the webhooks' policy
(:mod:`loopworks.labeling.destinations`): the host is resolved once, only public addresses
are used unless the ``webhook_allow`` setting lists the host, address or network, and the
POST goes to the checked address itself. Redirects are not followed.
"""

from __future__ import annotations

import http.client
import importlib
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConfigurationError, LoopworksError, NotFoundError
from loopworks.labeling.destinations import (
    Allowlist,
    PinnedConnection,
    PinnedTLSConnection,
    Target,
    check_url,
    parse_target,
    resolve,
)
from loopworks.labeling.resources import Resource, Resources
from loopworks.settings import load_settings

__all__ = ["BACKOFF_SECONDS", "HOOK_NAME", "Hook", "HookError", "Hooks", "hook_name_of_arn"]

log = logging.getLogger(__name__)

#: A hook's name: a Lambda function's name.
HOOK_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
#: Waits before the first, second and each further retry, in seconds.
BACKOFF_SECONDS = (0.2, 0.5, 1.0)
#: The most an answer of a URL hook may hold.
MAX_ANSWER_BYTES = 64 * 1024 * 1024

_KIND = "hook"
#: Resource names are stored in 63 characters, one short of Lambda's 64.
_STORED_NAME_LENGTH = 63
_LAMBDA_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:lambda:[a-z0-9-]+:\d{12}:function:"
                         r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?:\$LATEST|[a-zA-Z0-9_-]{1,128}))?")
_EXCERPT = 200


def hook_name_of_arn(arn: str) -> str | None:
    """The function name in a Lambda function ARN, which names the hook it stands for.

    Args:
        arn: ``arn:aws:lambda:<region>:<12-digit account>:function:<name>[:<qualifier>]``
            (a ``PreHumanTaskLambdaArn`` or ``AnnotationConsolidationLambdaArn``).

    Returns:
        ``<name>``, or None when ``arn`` is not a Lambda function ARN.
    """
    found = _LAMBDA_ARN.fullmatch(arn) if isinstance(arn, str) else None
    return found["name"] if found else None


@dataclass(frozen=True)
class Hook:
    """A registered hook: a Python function (``module:function``) or a URL, exactly one.

    Attributes:
        name: The name, as in the Lambda ARN that stands for it.
        python: ``module:function`` called with the event, or None.
        url: The http(s) URL the event is POSTed to, or None.
        timeout_seconds: How long one attempt may take.
        retries: Attempts after a failed first one.
        created_at: When the hook was registered.
    """

    name: str
    python: str | None = None
    url: str | None = None
    timeout_seconds: float = 30.0
    retries: int = 2
    created_at: datetime = field(default_factory=utcnow)


class HookError(LoopworksError):
    """A hook failed on every attempt (names the hook, the attempts and the last failure)."""


class _Failure(Exception):
    """One failed attempt; ``final`` when trying again cannot help."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final


class Hooks:
    """Register, list, remove and invoke the hooks of one metadata database.

    Args:
        engine: The metadata database; hooks are stored as resources of kind ``hook``.
        allow: ``webhook_allow`` entries for URL hooks; None reads the setting at each
            invocation, as webhooks do.
        backoff: Waits before each retry, in seconds (the last repeats).
        tls: TLS settings for https hooks (default: the system's CAs, names checked).
    """

    def __init__(self, engine: sa.Engine, *, allow: Sequence[str] | None = None,
                 backoff: Sequence[float] = BACKOFF_SECONDS,
                 tls: ssl.SSLContext | None = None) -> None:
        self.engine = engine
        self.allow = None if allow is None else tuple(allow)
        self.backoff = tuple(backoff) or (0.0,)
        self._resources = Resources(engine)
        self._tls = tls
        self._functions: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, *, python: str | None = None, url: str | None = None,
            timeout_seconds: float = 30.0, retries: int = 2) -> Hook:
        """Register a hook under ``name``, checked now.

        Args:
            name: The hook's name, a Lambda function name (``[a-zA-Z0-9_-]``, at most 63).
            python: ``module:function``: imported now (and by the process that invokes it,
                the server's), called with the event.
            url: An http(s) URL the event is POSTed to (its addresses are checked at each
                invocation).
            timeout_seconds: How long one attempt may take, 0.1 to 900.
            retries: Attempts after a failed first one, 0 to 10.

        Returns:
            The hook.

        Raises:
            ConfigurationError: A bad name, not exactly one of ``python`` and ``url``, a
                function that cannot be imported (says which part failed), a bad URL,
                timeout or retries.
            ConflictError: A hook of that name exists already.
        """
        if not isinstance(name, str) or not HOOK_NAME.fullmatch(name):
            raise ConfigurationError(
                f"hook name {name!r} must be 1 to 64 letters, digits, '-' or '_' "
                "(a Lambda function's name)", setting="name")
        if len(name) > _STORED_NAME_LENGTH:
            raise ConfigurationError(f"hook name {name!r} is longer than "
                                     f"{_STORED_NAME_LENGTH} characters", setting="name")
        if (python is None) == (url is None):
            raise ConfigurationError(f"hook {name!r} needs exactly one of python "
                                     "(module:function) and url", setting="python")
        if python is not None:
            self._function(python)
        if url is not None:
            check_url(url)
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int | float) \
                or not 0.1 <= timeout_seconds <= 900:
            raise ConfigurationError(f"hook {name!r}: timeout must be 0.1 to 900 seconds, not "
                                     f"{timeout_seconds!r}", setting="timeout_seconds")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ConfigurationError(f"hook {name!r}: retries must be 0 to 10, not "
                                     f"{retries!r}", setting="retries")
        made = self._resources.create(_KIND, name, {
            "python": python, "url": url, "timeout_seconds": float(timeout_seconds),
            "retries": retries})
        return _hook(made)

    def get(self, name: str) -> Hook:
        """The hook registered under ``name``.

        Raises:
            NotFoundError: No hook has that name.
        """
        try:
            return _hook(self._resources.get(_KIND, name))
        except NotFoundError:
            raise _not_found(name) from None

    def list(self) -> list[Hook]:
        """Every hook, by name."""
        return [_hook(r) for r in self._resources.list(_KIND)]

    def remove(self, name: str) -> None:
        """Unregister the hook ``name``.

        Raises:
            NotFoundError: No hook has that name.
        """
        try:
            self._resources.delete(_KIND, name)
        except NotFoundError:
            raise _not_found(name) from None

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        """Call hook ``name`` with ``event`` and return its JSON answer.

        A Python hook runs in a daemon thread of its own; an attempt that outlasts the
        timeout is abandoned, not stopped (Python cannot stop a thread), so its thread may
        run on in the background. Its return value comes back round-tripped through JSON.

        Args:
            name: The hook's name.
            event: The event, JSON (Ground Truth's payload: see the module's docstring).

        Returns:
            The hook's answer, parsed JSON (dicts, lists, strings, numbers, bools, None).

        Raises:
            NotFoundError: No hook has that name.
            HookError: Every attempt failed (names the last failure).
            TypeError: ``event`` is not JSON.
        """
        hook = self.get(name)
        try:
            body = json.dumps(event, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the event for hook {name!r} is not JSON: {exc}") from None
        attempts = 0
        while True:
            attempts += 1
            try:
                if hook.python is not None:
                    return self._call(hook, hook.python, body)
                return self._post(hook, str(hook.url), body.encode())
            except _Failure as failure:
                log.info("hook %r, attempt %d: %s", name, attempts, failure.reason)
                if failure.final or attempts > hook.retries:
                    raise HookError(
                        f"hook {name!r} {failure.reason} ({attempts} attempt"
                        f"{'' if attempts == 1 else 's'})",
                        hook=name, attempts=attempts, reason=failure.reason) from None
            time.sleep(self.backoff[min(attempts - 1, len(self.backoff) - 1)])

    def _function(self, spec: str) -> Callable[..., Any]:
        """The function ``module:function`` names, imported once (ConfigurationError)."""
        with self._lock:
            if spec in self._functions:
                return self._functions[spec]
        module_name, _, attribute = str(spec).partition(":")
        if not all(p.isidentifier() for p in module_name.split(".")) \
                or not all(p.isidentifier() for p in attribute.split(".")):
            raise ConfigurationError(f"python hook {spec!r} must be module:function, e.g. "
                                     "my_hooks:pre_annotate", setting="python")
        try:
            found: Any = importlib.import_module(module_name)
        except Exception as exc:
            raise ConfigurationError(
                f"python hook {spec!r}: cannot import module {module_name!r} "
                f"({type(exc).__name__}: {exc}); it must be importable here and by the "
                "server", setting="python") from None
        for part in attribute.split("."):
            if not hasattr(found, part):
                raise ConfigurationError(f"python hook {spec!r}: module {module_name!r} has "
                                         f"no {attribute!r}", setting="python")
            found = getattr(found, part)
        if not callable(found):
            raise ConfigurationError(f"python hook {spec!r}: {attribute!r} is not callable",
                                     setting="python")
        with self._lock:
            self._functions[spec] = found
        return found  # type: ignore[no-any-return]

    def _call(self, hook: Hook, spec: str, body: str) -> Any:
        """One attempt of a Python hook, in a daemon thread, abandoned at the timeout."""
        try:
            function = self._function(spec)
        except ConfigurationError as exc:
            raise _Failure(f"cannot be loaded: {exc}", final=True) from None
        outcome: list[tuple[bool, Any]] = []

        def run() -> None:
            try:
                outcome.append((True, function(json.loads(body))))  # a fresh copy each time
            except BaseException as exc:  # reported to the invoking thread
                outcome.append((False, exc))

        thread = threading.Thread(target=run, daemon=True, name=f"loopworks-hook {hook.name}")
        thread.start()
        thread.join(hook.timeout_seconds)
        if not outcome:
            raise _Failure(f"timed out after {hook.timeout_seconds:g} s")
        returned, value = outcome[0]
        if not returned:
            raise _Failure(f"raised {type(value).__name__}: {value}")
        try:
            return json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise _Failure(f"returned a value that is not JSON: {exc}") from None

    def _allowlist(self) -> Allowlist:
        if self.allow is not None:
            return Allowlist(self.allow)
        return Allowlist(load_settings().webhook_allow)

    def _post(self, hook: Hook, url: str, body: bytes) -> Any:
        """One attempt of a URL hook: POST to checked addresses, read a JSON answer."""
        target = parse_target(url)
        if not isinstance(target, Target):
            raise _Failure(f"has a URL that {target}", final=True)
        try:
            allow = self._allowlist()
        except ConfigurationError as exc:
            raise _Failure(f"was not called: {exc}", final=True) from None
        try:
            addresses = resolve(target.host, target.port)
        except (OSError, UnicodeError) as exc:
            raise _Failure(f"could not be reached: cannot resolve {target.host}: {exc}"
                           ) from None
        allowed = [a for a in addresses if allow.permits(target.host, a)]
        if not allowed:
            raise _Failure(
                f"was refused: {target.host} is at {', '.join(map(str, addresses))}, not a "
                "public address; list it in the webhook_allow setting "
                "(LOOPWORKS_WEBHOOK_ALLOW) to allow it", final=True)
        timeout = hook.timeout_seconds
        conn: PinnedConnection
        try:
            if target.scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                conn = PinnedTLSConnection(target.host, target.port, allowed, timeout,
                                           self._tls)
            else:
                conn = PinnedConnection(target.host, target.port, allowed, timeout)
        except (http.client.HTTPException, ValueError) as exc:
            raise _Failure(f"could not be reached: {exc}", final=True) from None
        watchdog = threading.Timer(timeout, conn.abort)  # bounds the whole attempt
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("POST", target.path, body=body, headers={
                "Content-Type": "application/json", "Accept": "application/json",
                "User-Agent": "loopworks-hooks"})
            response = conn.getresponse()
            answer = response.read(MAX_ANSWER_BYTES + 1)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if conn.aborted or isinstance(exc, TimeoutError):
                raise _Failure(f"timed out after {timeout:g} s") from None
            raise _Failure(f"could not be reached: {type(exc).__name__}: {exc}") from None
        finally:
            watchdog.cancel()
            watchdog.join()
            conn.close()
        status = response.status
        if 300 <= status < 400:
            raise _Failure(f"answered HTTP {status} (redirects are not followed)")
        if not 200 <= status < 300:
            raise _Failure(f"answered HTTP {status}: {_excerpt(answer)}")
        if len(answer) > MAX_ANSWER_BYTES:
            raise _Failure(f"answered more than {MAX_ANSWER_BYTES // 2**20} MiB")
        try:
            return json.loads(answer)
        except ValueError:
            raise _Failure(f"answered something that is not JSON: {_excerpt(answer)}"
                           ) from None


def _excerpt(answer: bytes) -> str:
    text = answer[:_EXCERPT * 4].decode("utf-8", "replace")[:_EXCERPT].strip()
    return text or "(an empty body)"


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(f"no hook named {name!r}: register it with `loopworks hooks add "
                         f"{name} --python module:function` (or --url URL)", kind=_KIND,
                         name=name)


def _hook(resource: Resource) -> Hook:
    doc = resource.document
    return Hook(resource.name, doc.get("python"), doc.get("url"),
                float(doc.get("timeout_seconds", 30.0)), int(doc.get("retries", 2)),
                resource.created_at)
