"""``loopworks hooks``: the functions Ground Truth runs as Lambdas, registered by name."""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any

import click
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console, services

if TYPE_CHECKING:
    from loopworks.labeling.hooks import Hook, Hooks


def _hooks(home: str | None) -> Hooks:
    from loopworks.labeling.hooks import Hooks

    lw = services(home)
    return Hooks(lw.engine, allow=lw.settings.webhook_allow)


def _row(hook: Hook) -> dict[str, Any]:
    return {"name": hook.name, "python": hook.python, "url": hook.url,
            "timeout_seconds": hook.timeout_seconds, "retries": hook.retries,
            "created_at": hook.created_at.isoformat(timespec="seconds")}


@click.group()
def hooks() -> None:
    """Hooks: loopworks' stand-in for a labeling job's Lambda functions.

    A job's PreHumanTaskLambdaArn (pre-annotation) and AnnotationConsolidationLambdaArn
    (annotation consolidation), arn:aws:lambda:REGION:ACCOUNT:function:NAME, call the hook
    registered here as NAME: a Python function or a URL that gets the event as JSON.
    """


@hooks.command("add")
@click.argument("name")
@click.option("--python", "python", default=None, metavar="MODULE:FUNCTION",
              help="Call this Python function with the event. It runs in the server's "
                   "process, so its module must be importable there too.")
@click.option("--url", default=None,
              help="POST the event as JSON to this http(s) URL; the answer must be JSON. "
                   "Only public addresses unless the webhook_allow setting lists the host.")
@click.option("--timeout", "timeout_seconds", type=float, default=30.0, show_default=True,
              help="Seconds one attempt may take (0.1 to 900).")
@click.option("--retries", type=int, default=2, show_default=True,
              help="Attempts after a failed first one (0 to 10).")
@home_option
@handle_errors
def add_hook(name: str, python: str | None, url: str | None, timeout_seconds: float,
             retries: int, home: str | None) -> None:
    """Register hook NAME: give --python or --url.

    It answers for the Lambda function arn:aws:lambda:REGION:ACCOUNT:function:NAME that a
    job names as its PreHumanTaskLambdaArn or AnnotationConsolidationLambdaArn.
    """
    hook = _hooks(home).add(name, python=python, url=url, timeout_seconds=timeout_seconds,
                            retries=retries)
    click.echo(f"registered hook {hook.name!r}: {hook.python or hook.url}")


@hooks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def list_hooks(as_json: bool, home: str | None) -> None:
    """List hooks with what they call, timeout and retries."""
    rows = [_row(h) for h in _hooks(home).list()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("hook", "calls", "timeout", "retries"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["python"] or row["url"], f"{row['timeout_seconds']:g} s",
                      str(row["retries"]))
    plain_console().print(table if rows else "no hooks yet: loopworks hooks add NAME "
                                             "--python module:function")


@hooks.command("remove")
@click.argument("name")
@home_option
@handle_errors
def remove_hook(name: str, home: str | None) -> None:
    """Unregister hook NAME (jobs whose Lambda ARNs name it then fail to call it)."""
    _hooks(home).remove(name)
    click.echo(f"removed hook {name!r}")


@hooks.command("invoke")
@click.argument("name")
@click.option("--event", "event_file", type=click.File("r"), default=None,
              metavar="FILE|-", help="A JSON file with the event (- reads standard input); "
                                     "default: {}. Ground Truth's events are described in "
                                     "`loopworks.labeling.hooks`.")
@home_option
@handle_errors
def invoke_hook(name: str, event_file: IO[str] | None, home: str | None) -> None:
    """Call hook NAME with an event, as a labeling job would, and print its JSON answer.

    Handy to try a hook. A --python hook runs in this process here.
    """
    from loopworks.errors import InputError

    event: Any = {}
    if event_file is not None:
        try:
            event = json.load(event_file)
        except ValueError as exc:
            raise InputError(f"{event_file.name}: not JSON: {exc}",
                             file=event_file.name) from None
    if not isinstance(event, dict):
        raise InputError(f"{getattr(event_file, 'name', '-')}: the event must be a JSON "
                         "object", file=getattr(event_file, "name", "-"))
    click.echo(json.dumps(_hooks(home).invoke(name, event), indent=2))
