"""``loopworks team`` and ``loopworks worker``: the people who label and review."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console, services

if TYPE_CHECKING:
    from loopworks.labeling.workforce import Workforce


def _workforce(home: str | None) -> Workforce:
    return services(home).workforce


@click.group()
def team() -> None:
    """Teams: groups of workers that jobs and review flows are assigned to."""


@team.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the team does.")
@home_option
@handle_errors
def add_team(name: str, description: str, home: str | None) -> None:
    """Create team NAME."""
    _workforce(home).add_team(name, description)
    click.echo(f"created team {name!r}")


@team.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def list_teams(as_json: bool, home: str | None) -> None:
    """List teams with their members."""
    workforce = _workforce(home)
    rows: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description,
         "members": [w.name for w in workforce.members(t.name)]} for t in workforce.teams()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("team", "members", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], ", ".join(row["members"]), row["description"])
    plain_console().print(table if rows else "no teams yet: loopworks team add NAME")


@click.group()
def worker() -> None:
    """Workers: admins, annotators and reviewers, with API tokens and login links."""


@worker.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "annotator", "reviewer"]),
              default="annotator", show_default=True, help="What the worker may do.")
@click.option("--team", "teams", multiple=True, help="Team to join (repeatable).")
@click.option("--password", default=None,
              help="Set a password (else sign in with the one-time login link).")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="Server address used in the printed login link.")
@home_option
@handle_errors
def add_worker(name: str, role: str, teams: tuple[str, ...], password: str | None, url: str,
               home: str | None) -> None:
    """Create worker NAME; prints an API token and a one-time login link (shown once)."""
    workforce = _workforce(home)
    created = workforce.add_worker(name, role, teams_=list(teams), password=password)
    token = workforce.issue_api_token(name)
    link = workforce.issue_login_link(name)
    click.echo(f"created {created.role.value} {name!r} in teams: {', '.join(created.teams) or '-'}")
    click.echo(f"API token (shown once; `loopworks worker token {name}` lists and revokes "
               f"tokens): {token}")
    click.echo(f"login link (one use, 7 days): {url.rstrip('/')}/login/{link}")


@worker.command("aws-keys")
@click.argument("name")
@click.option("--revoke", "revoke_id", default=None, metavar="KEY_ID",
              help="End the key pair with this access key id at once.")
@click.option("--list", "listing", is_flag=True, help="List the worker's key ids instead.")
@home_option
@handle_errors
def aws_keys(name: str, revoke_id: str | None, listing: bool, home: str | None) -> None:
    """Issue an AWS access key pair for worker NAME, printed as shell exports.

    boto3, the AWS CLI and the SageMaker SDK then sign requests as this worker, with its
    role, against the server's /aws endpoint:

    \b
      eval "$(loopworks worker aws-keys lead)"
      export AWS_ENDPOINT_URL=http://127.0.0.1:8000/aws AWS_DEFAULT_REGION=us-east-1

    The secret is shown once and never stored (it is derived from the server's secret key
    setting, so changing that ends every key). --revoke KEY_ID ends a pair.
    """
    keys = services(home).access_keys
    if revoke_id:
        keys.revoke(name, revoke_id)
        click.echo(f"revoked access key {revoke_id} of {name!r}")
        return
    if listing:
        for key in keys.keys(name):
            click.echo(f"{key.key_id}  created {key.created_at.isoformat(timespec='seconds')}")
        return
    key_id, secret = keys.issue(name)
    click.echo(f"# AWS access key {key_id} of {name!r} (the secret is shown once)", err=True)
    click.echo(f"export AWS_ACCESS_KEY_ID={key_id}")
    click.echo(f"export AWS_SECRET_ACCESS_KEY={secret}")


@worker.command("token")
@click.argument("name")
@click.option("--new", "issue", is_flag=True, help="Issue a new API token (shown once).")
@click.option("--expires-in", "expires_in", type=click.FloatRange(min=0, min_open=True),
              default=None, help="With --new: days until the token stops working "
                                 "(default: never; revoke it instead).")
@click.option("--revoke", "revoke_id", default=None, metavar="TOKEN_ID",
              help="End the token with this id (from the list) at once.")
@click.option("--json", "as_json", is_flag=True, help="List as JSON.")
@home_option
@handle_errors
def tokens(name: str, issue: bool, expires_in: float | None, revoke_id: str | None,
           as_json: bool, home: str | None) -> None:
    """List worker NAME's API tokens (id, created, expires, last used); --new issues one,
    --revoke TOKEN_ID ends one."""
    from datetime import timedelta

    from loopworks.errors import ConfigurationError
    from loopworks.labeling.workforce import token_id

    workforce = _workforce(home)
    if issue and revoke_id:
        raise ConfigurationError("give --new or --revoke, not both", setting="token")
    if expires_in is not None and not issue:
        raise ConfigurationError("--expires-in goes with --new", setting="expires_in")
    if issue:
        lifetime = timedelta(days=expires_in) if expires_in is not None else None
        secret = workforce.issue_api_token(name, lifetime)
        click.echo(f"API token {token_id(secret)} of {name!r} (shown once"
                   f"{f', expires in {expires_in:g} days' if expires_in else ''}):", err=True)
        click.echo(secret)
        return
    if revoke_id:
        workforce.revoke_api_token(name, revoke_id)
        click.echo(f"revoked API token {revoke_id} of {name!r}")
        return
    rows = [{"id": t.id, "created_at": t.created_at.isoformat(timespec="seconds"),
             "expires_at": t.expires_at.isoformat(timespec="seconds") if t.expires_at else None,
             "last_used_at": t.last_used_at.isoformat(timespec="seconds")
             if t.last_used_at else None} for t in workforce.api_tokens(name)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("token id", "created", "expires", "last used"):
        table.add_column(col, no_wrap=True)
    for row in rows:
        table.add_row(row["id"], row["created_at"], row["expires_at"] or "never",
                      row["last_used_at"] or "never")
    plain_console().print(table if rows else f"{name!r} has no API tokens: loopworks worker token "
                    f"{name} --new")


@worker.command("login-link")
@click.argument("name")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="Server address used in the link.")
@home_option
@handle_errors
def login_link(name: str, url: str, home: str | None) -> None:
    """Issue a new one-time login link for worker NAME."""
    click.echo(f"{url.rstrip('/')}/login/{_workforce(home).issue_login_link(name)}")


@worker.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def list_workers(as_json: bool, home: str | None) -> None:
    """List workers with role and teams."""
    rows: list[dict[str, Any]] = [
        {"name": w.name, "role": w.role.value, "teams": list(w.teams), "active": w.active}
        for w in _workforce(home).workers()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("worker", "role", "teams", "active"):
        table.add_column(col)
    for row in rows:
        table.add_row(str(row["name"]), str(row["role"]), ", ".join(row["teams"]),
                      str(row["active"]))
    plain_console().print(table if rows else "no workers yet: loopworks worker add NAME")


@worker.command("deactivate")
@click.argument("name")
@home_option
@handle_errors
def deactivate(name: str, home: str | None) -> None:
    """Stop worker NAME from signing in (their answers are kept)."""
    workforce = _workforce(home)
    workforce.worker(name)
    workforce.deactivate(name)
    click.echo(f"deactivated {name!r}")
