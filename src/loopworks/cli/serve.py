"""``loopworks serve``: the web server (JSON API under /api, docs at /docs)."""

from __future__ import annotations

import os

import click

from loopworks.cli import handle_errors


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option("--home", default=None, help="loopworks home folder.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Server processes (set LOOPWORKS_API_TOKEN so they share one token).")
@handle_errors
def serve(host: str, port: int, home: str | None, workers: int) -> None:
    """Serve the web pages (labeling, review, dashboards, Studio) and the JSON API.

    People sign in with a one-time link (`loopworks worker login-link NAME`) or a password.
    Every /api route needs `Authorization: Bearer TOKEN`: a worker's API token, or the
    server's own token LOOPWORKS_API_TOKEN (a random one is printed here when unset)."""
    import uvicorn

    from loopworks.server.auth import new_token

    if home:
        os.environ["LOOPWORKS_HOME"] = home
    if not os.environ.get("LOOPWORKS_API_TOKEN"):
        os.environ["LOOPWORKS_API_TOKEN"] = new_token()
        click.echo("API token (set LOOPWORKS_API_TOKEN to choose your own): "
                   + os.environ["LOOPWORKS_API_TOKEN"], err=True)
    click.echo(f"serving on http://{host}:{port}  (API docs: http://{host}:{port}/docs)", err=True)
    click.echo("people sign in with a one-time link: loopworks worker login-link NAME "
               f"--url http://{host}:{port}", err=True)
    uvicorn.run("loopworks.server.asgi:app", host=host, port=port, workers=workers,
                log_level="warning")
