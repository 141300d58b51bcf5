"""Options and openers shared by the command modules."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

__all__ = ["home_option", "metadata_engine", "plain_console"]

home_option = click.option("--home", default=None,
                           help="loopworks home folder (default: LOOPWORKS_HOME or ~/.loopworks).")


def metadata_engine(home: str | None) -> Any:
    """The metadata database engine for a home folder (LOOPWORKS_DATABASE_URL wins)."""
    from loopworks.metadata import database_url, open_engine
    from loopworks.settings import load_settings

    return open_engine(database_url(load_settings(home=home).home))


def plain_console(*, stderr: bool = False) -> Console:
    """A rich console that never wraps or crops a printed line, so file paths and URLs stay
    whole for copy and paste whatever the terminal's width (tables still fit it)."""
    return Console(stderr=stderr, soft_wrap=True)
