"""Options and openers shared by the command modules."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["home_option", "metadata_engine"]

home_option = click.option("--home", default=None,
                           help="loopworks home folder (default: LOOPWORKS_HOME or ~/.loopworks).")


def metadata_engine(home: str | None) -> Any:
    """The metadata database engine for a home folder (LOOPWORKS_DATABASE_URL wins)."""
    from loopworks.metadata import database_url, open_engine
    from loopworks.settings import load_settings

    return open_engine(database_url(load_settings(home=home).home))
