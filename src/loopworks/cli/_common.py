"""Options and openers shared by the command modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from loopworks.services import Loopworks

__all__ = ["home_option", "plain_console", "services"]

home_option = click.option("--home", default=None,
                           help="loopworks home folder (default: LOOPWORKS_HOME or ~/.loopworks).")


def services(home: str | None) -> Loopworks:
    """The services of a home folder (:func:`loopworks.open`), as a command uses them:
    automated-labeling rounds are not started in the background (a command that answers,
    ``label simulate``, runs them itself) and the process exits when the command ends."""
    from loopworks.services import open as open_services

    return open_services(home, run_rounds=False)


def plain_console(*, stderr: bool = False) -> Console:
    """A rich console that never wraps or crops a printed line, so file paths and URLs stay
    whole for copy and paste whatever the terminal's width (tables still fit it)."""
    return Console(stderr=stderr, soft_wrap=True)
