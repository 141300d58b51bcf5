"""``loopworks serve``: the web server (JSON API under /api, docs at /docs)."""

from __future__ import annotations

import os
from typing import Any

import click

from loopworks.cli import handle_errors
from loopworks.cli.config import setting_options

#: Settings a server reads, each also an option of ``loopworks serve``.
SERVER_SETTINGS = ("database_url", "online_store_url", "offline_store_url", "object_store_url",
                   "object_store_endpoint", "public_url", "secure_cookies", "secret_key",
                   "api_token", "webhook_allow")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option("--home", default=None, help="loopworks home folder.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Server processes (set the api_token setting so they share one token).")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve HTTPS with this certificate (PEM); needs --ssl-keyfile. Behind a "
                   "TLS proxy, leave it out and set public_url to the https address.")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The certificate's private key (PEM).")
@setting_options(*SERVER_SETTINGS)
@handle_errors
def serve(host: str, port: int, home: str | None, workers: int, ssl_certfile: str | None,
          ssl_keyfile: str | None, **options: Any) -> None:
    """Serve the web pages (labeling, review, dashboards, Studio) and the JSON API.

    People sign in with a one-time link (`loopworks worker login-link NAME`) or a password.
    Every /api route needs `Authorization: Bearer TOKEN`: a worker's API token, or the
    server's own token, the api_token setting (LOOPWORKS_API_TOKEN; a random one is printed
    here when unset). `loopworks config show` prints the settings the server will use."""
    import uvicorn

    from loopworks.server.auth import new_token
    from loopworks.settings import load_settings, setting_specs

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    given = {"home": home, **options}
    settings = load_settings(**given)  # a bad setting stops here, before any server starts
    # The metadata database is brought to this release's schema once, here, before the
    # server processes start (a database a newer loopworks wrote stops here, with a message).
    from loopworks.metadata import database_url, open_engine

    engine = open_engine(database_url(settings.home, settings.database_url))
    # Every server of one database must share the secret (sessions, AWS keys).
    from loopworks.labeling.accesskeys import check_deployment_secret
    from loopworks.settings import server_secret

    check_deployment_secret(engine, server_secret(settings))
    if not settings.api_token:
        given["api_token"] = new_token()
        click.echo("API token (set LOOPWORKS_API_TOKEN to choose your own): "
                   + given["api_token"], err=True)
    # uvicorn's server processes build the app from the environment: pass the options on.
    for spec in setting_specs():
        value = given.get(spec.name)
        if value is not None:
            os.environ[spec.env_var] = ("true" if value else "false") if isinstance(
                value, bool) else str(value)
    scheme = "https" if ssl_certfile else "http"
    click.echo(f"serving on {scheme}://{host}:{port}  (API docs: {scheme}://{host}:{port}/docs)",
               err=True)
    click.echo("people sign in with a one-time link: loopworks worker login-link NAME "
               f"--url {scheme}://{host}:{port}", err=True)
    uvicorn.run("loopworks.server.asgi:app", host=host, port=port, workers=workers,
                log_level="warning", ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
