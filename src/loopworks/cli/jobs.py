"""``loopworks jobs``: the records of past processing jobs."""

from __future__ import annotations

import json

import click
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import plain_console
from loopworks.processing.report import FileJobStore
from loopworks.settings import load_settings


@click.group()
def jobs() -> None:
    """List and describe processing jobs (records under LOOPWORKS_HOME/jobs)."""


@jobs.command("list")
@click.option("--home", default=None, help="loopworks home folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_jobs(home: str | None, as_json: bool) -> None:
    """List jobs, newest first."""
    reports = FileJobStore(load_settings(home=home).jobs_dir).list()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    table = Table()
    for col in ("job", "status", "created", "rows in", "rows out", "rejected", "seconds",
                "output"):
        table.add_column(col)
    for r in reports:
        table.add_row(r.job_id, r.status, r.created_at[:19], str(r.counts.get("rows_in", "")),
                      str(r.counts.get("rows_out", "")), str(r.counts.get("rows_rejected", "")),
                      f"{r.timings.get('total', 0):.1f}", r.output)
    plain_console().print(table if reports else "no jobs yet: run `loopworks process --help`")


@jobs.command("describe")
@click.argument("job_id")
@click.option("--home", default=None, help="loopworks home folder.")
@handle_errors
def describe_job(job_id: str, home: str | None) -> None:
    """Print one job's full report as JSON (a unique id prefix is enough)."""
    report = FileJobStore(load_settings(home=home).jobs_dir).get(job_id)
    click.echo(json.dumps(report.to_dict(), indent=2))
