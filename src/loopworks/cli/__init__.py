"""The ``loopworks`` command: one group, one module per noun."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from loopworks import __version__
from loopworks.errors import LoopworksError

__all__ = ["main", "handle_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn a :class:`LoopworksError` into a clean message and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LoopworksError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="loopworks")
def main() -> None:
    """loopworks: labeling, human review, feature engineering and a feature store.

    Run `loopworks COMMAND --help` for the options of each command.
    """


def _register() -> None:
    from loopworks.cli import config as config_cli
    from loopworks.cli import db as db_cli
    from loopworks.cli import embed, fs, jobs, label, process, profile, sample, serve, workforce
    from loopworks.cli import hooks as hooks_cli
    from loopworks.cli import model as model_cli
    from loopworks.cli import predict as predict_cli
    from loopworks.cli import processing as processing_cli
    from loopworks.cli import review as review_cli

    main.add_command(sample.sample)
    main.add_command(process.process)
    main.add_command(processing_cli.processing)
    main.add_command(embed.embed)
    main.add_command(profile.profile)
    main.add_command(jobs.jobs)
    main.add_command(fs.fs)
    main.add_command(serve.serve)
    main.add_command(workforce.team)
    main.add_command(workforce.worker)
    main.add_command(label.label)
    main.add_command(hooks_cli.hooks)
    main.add_command(model_cli.model)
    main.add_command(predict_cli.predict)
    main.add_command(review_cli.review)
    main.add_command(config_cli.config)
    main.add_command(db_cli.db)


_register()
