"""``loopworks db``: the metadata database's schema version, shown and brought up to date."""

from __future__ import annotations

import json

import click

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option


def _url(home: str | None) -> str:
    from loopworks.metadata import database_url
    from loopworks.settings import load_settings

    return database_url(load_settings(home=home).home)


@click.group()
def db() -> None:
    """The metadata database (jobs, workers, flows, feature groups): its schema version.

    Every command upgrades an older database when it first opens it; these commands let an
    operator see where a database stands and upgrade it at a chosen moment (before rolling
    out a new release to many servers, say). A database upgraded by a newer loopworks is
    refused rather than misread.
    """


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def status(as_json: bool, home: str | None) -> None:
    """Show the database's schema revision next to this release's (changes nothing).

    Exits with 1 when the database needs `loopworks db upgrade`, 2 when a newer loopworks
    upgraded it.
    """
    from loopworks.metadata import build_engine
    from loopworks.metadata.schema import history
    from loopworks.metadata.schema import status as schema_status

    url = _url(home)
    engine = build_engine(url)
    try:
        state = schema_status(engine)
    finally:
        engine.dispose()
    known = {revision for revision, _ in history()}
    if state.up_to_date:
        verdict, code = "up to date", 0
    elif state.current is not None and state.current not in known:
        verdict, code = "newer than this loopworks: upgrade loopworks", 2
    elif not state.has_tables:
        verdict, code = "empty: created on first use (or by `loopworks db upgrade`)", 1
    else:
        verdict, code = "older: run `loopworks db upgrade`", 1
    shown_url = engine.url.render_as_string(hide_password=True)
    if as_json:
        click.echo(json.dumps({"database": shown_url, "current": state.current,
                               "head": state.head, "state": verdict.split(":")[0]}))
    else:
        click.echo(f"database:  {shown_url}")
        click.echo(f"revision:  {state.current or '(none)'}")
        click.echo(f"this release: {state.head}")
        click.echo(f"state:     {verdict}")
    raise SystemExit(code)


@db.command("upgrade")
@home_option
@handle_errors
def upgrade(home: str | None) -> None:
    """Bring the database to this release's schema (safe to repeat; one process at a time
    upgrades, others wait)."""
    from loopworks.metadata import build_engine
    from loopworks.metadata.schema import upgrade as schema_upgrade

    engine = build_engine(_url(home))
    try:
        before, after = schema_upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"already at revision {after}")
    else:
        click.echo(f"upgraded from {before or '(unversioned)'} to {after}")


@db.command("history")
def show_history() -> None:
    """List the schema revisions this release knows, oldest first."""
    from loopworks.metadata.schema import history

    for revision, description in history():
        click.echo(f"{revision}  {description}")
