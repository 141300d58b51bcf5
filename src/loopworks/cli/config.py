"""``loopworks config``: the settings, their values and where each came from.

Also :func:`setting_options`, which gives a command one option per named setting with the
setting's own help text, so options never restate (and drift from) the settings module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option
from loopworks.settings import SettingSpec, config_path, explain_settings, setting_specs

__all__ = ["config", "setting_options"]

F = TypeVar("F", bound=Callable[..., Any])


def _option_help(spec: SettingSpec) -> str:
    text = f"{spec.help} Default: {spec.default_text}. Env: {spec.env_var}."
    if spec.secret:
        text += (" Prefer the environment or config.toml: other users of the machine can "
                 "see a command line.")
    return text


def setting_options(*names: str) -> Callable[[F], F]:
    """Click options for the named settings (``--database-url``, ``--secure-cookies/
    --no-secure-cookies``...), their help taken from the setting; unset options are None.

    Args:
        *names: Setting names, as fields of :class:`~loopworks.settings.Settings`.

    Returns:
        A decorator adding the options; the command receives them by setting name.
    """
    specs = {spec.name: spec for spec in setting_specs()}

    def decorate(func: F) -> F:
        for name in reversed(names):
            spec = specs[name]
            if spec.kind == "bool":
                flag = f"{spec.option}/--no-{spec.option.removeprefix('--')}"
                func = click.option(flag, spec.name, default=None,
                                    help=_option_help(spec))(func)
            else:
                func = click.option(spec.option, spec.name, default=None,
                                    type=int if spec.kind == "int" else str,
                                    metavar="URL" if spec.name.endswith("_url") else None,
                                    help=_option_help(spec))(func)
        return func

    return decorate


@click.group()
def config() -> None:
    """Show the settings: value, source (argument, environment, config file, default) and
    help. Each comes from an option, else LOOPWORKS_<NAME>, else config.toml in the home
    folder, else its default."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@home_option
@handle_errors
def show(as_json: bool, home: str | None) -> None:
    """Print every setting, its value (secrets masked), where it came from and its help."""
    values = explain_settings(home=home)
    path = config_path(home)
    if as_json:
        click.echo(json.dumps({
            "config_file": str(path), "config_file_exists": path.is_file(),
            "settings": [{
                "name": v.spec.name, "value": _json_value(v.value, v.shown, v.spec.secret),
                "source": v.source, "where": v.where,
                "env": v.spec.env_var, "config_key": v.spec.name if v.spec.in_config else None,
                "secret": v.spec.secret, "default": v.spec.default_text, "help": v.spec.help,
            } for v in values]}, indent=2))
        return
    click.echo(f"config file: {path}" + ("" if path.is_file() else " (none)"))
    for v in values:
        shown = v.shown or f"(unset: {v.spec.default_text})"
        origin = f"{v.source} {v.where}" if v.where else v.source
        click.echo(f"\n{v.spec.name} = {shown}  [{origin}]")
        where = f"env {v.spec.env_var}" + (
            f", config key {v.spec.name}" if v.spec.in_config else "")
        click.echo(f"    {v.spec.help} ({where})")


def _json_value(value: Any, shown: str, secret: bool) -> Any:
    if secret:
        return shown
    if isinstance(value, tuple):
        return list(value)
    return value if isinstance(value, bool | int | str) else str(value)


@config.command("path")
@home_option
@handle_errors
def show_path(home: str | None) -> None:
    """Print where config.toml is (or would be) for the home folder."""
    click.echo(str(config_path(home)))
