"""One error tree for loopworks.

Every error a user can cause derives from :class:`LoopworksError`. Subclasses carry the
fields that say *where* things went wrong (file, line, row, field) so the CLI can print a
clean message and a server can map them to HTTP status codes in one place. They pickle
cleanly, so an error raised in a worker process (or a Ray task) reaches the driver intact.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "InputError",
    "JobNotFoundError",
    "LoopworksError",
    "MissingDependencyError",
    "NotFoundError",
    "PermissionDenied",
    "RateLimited",
    "ConflictError",
    "TokenizerError",
    "ValidationError",
]


class LoopworksError(Exception):
    """Root of every error loopworks raises on purpose."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword fields do not survive the default Exception pickling; rebuild explicitly.
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[LoopworksError], message: str, fields: dict[str, Any]) -> LoopworksError:
    return cls(message, **fields)


class ConfigurationError(LoopworksError):
    """A setting, option or argument is invalid (names the setting and the allowed values)."""


class InputError(LoopworksError):
    """An input file is missing or malformed (names the file and, when known, line or row)."""


class TokenizerError(LoopworksError):
    """A tokenizer cannot be found or loaded (says how to get one)."""


class ValidationError(LoopworksError):
    """Data does not match its definitions (names feature group, row and feature)."""


class NotFoundError(LoopworksError):
    """A named thing (feature group, record, job...) does not exist."""


class PermissionDenied(LoopworksError):
    """Unknown credentials, or a role or team that may not do this."""


class RateLimited(PermissionDenied):
    """Too many attempts (failed sign-ins); ``retry_after`` says how many seconds to wait."""


class ConflictError(LoopworksError):
    """The request conflicts with the current state (already exists, newer record...)."""


class JobNotFoundError(NotFoundError):
    """No job record with the given id exists under the loopworks home folder."""


class MissingDependencyError(LoopworksError):
    """An optional extra is needed for this feature; the message gives the install command."""

    def __init__(self, package: str, extra: str, feature: str, command: str | None = None) -> None:
        # ``command`` replaces the plain extra install when the order matters (PyTorch first).
        command = command or f'pip install "loopworks[{extra}]"'
        super().__init__(
            f"{feature} needs the Python package {package!r}, which is not installed. "
            f"Install it with: {command}",
            package=package,
            extra=extra,
            feature=feature,
            command=command,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.fields["package"], self.fields["extra"], self.fields["feature"],
                             self.fields["command"]))
