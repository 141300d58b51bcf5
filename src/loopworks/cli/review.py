"""``loopworks review``: flow definitions and human loops over model predictions."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console, services
from loopworks.cli.config import setting_options
from loopworks.clock import as_utc
from loopworks.errors import ConfigurationError, InputError
from loopworks.settings import load_settings

if TYPE_CHECKING:
    from loopworks.review.flows import HumanReview

_STATUSES = ["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
_BUILT_IN_TEMPLATES = ("classification-review", "span-review")


def _review(home: str | None) -> HumanReview:
    return services(home).review


def _json_or_file(value: str, option: str) -> Any:
    """A JSON document given inline or as ``@FILE``."""
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{option} {value}: cannot read {path} ({exc.strerror})",
                             file=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = value[1:] if value.startswith("@") else "the value"
        raise InputError(f"{option}: {where} is not valid JSON ({exc.msg}, line {exc.lineno} "
                         f"column {exc.colno})", setting=option) from None


def _template(value: str) -> str:
    if value in _BUILT_IN_TEMPLATES:
        return value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--template {value}: cannot read {path} ({exc.strerror})",
                             file=str(path)) from None
    raise ConfigurationError(f"--template {value!r}: use {' or '.join(_BUILT_IN_TEMPLATES)}, "
                             "or @FILE.html for a Jinja2 template",
                             setting="template", valid_values=list(_BUILT_IN_TEMPLATES))


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{option} {value!r} is not an ISO 8601 date or time (e.g. "
                                 "2026-01-31 or 2026-01-31T12:00:00Z)", setting=option) from None
    return as_utc(parsed)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group()
def review() -> None:
    """Human review of model predictions: flows, human loops, batch runs, summaries."""


# ------------------------------------------------------------------------------- flows
@review.group()
def flow() -> None:
    """Flow definitions: who reviews which predictions, how many times, where output goes."""


@flow.command("create")
@click.argument("name")
@click.option("--team", required=True, help="Team whose workers review the loops.")
@click.option("--labels", default="",
              help="Comma-separated classes, in the model's order, e.g. negative,neutral,"
                   "positive (entity types for span-review; optional with --task-ui).")
@click.option("--output", required=True,
              help="Folder or fsspec URL (s3://...) for the output documents.")
@click.option("--title", default="", help="Short title reviewers see.")
@click.option("--description", default="", help="What reviewers should do.")
@click.option("--task-count", type=int, default=1, show_default=True,
              help="Reviewers per loop (their answers are consolidated).")
@click.option("--time-limit", type=int, default=300, show_default=True,
              help="Seconds a reviewer may hold a task before it returns to the queue.")
@click.option("--lifetime", type=int, default=7 * 24 * 3600, show_default=True,
              help="Seconds a loop stays available; then it fails as Expired.")
@click.option("--conditions", default=None,
              help="Activation conditions in A2I's JSON shape, inline or @FILE; without them "
                   "every input goes to people.")
@click.option("--template", default="classification-review", show_default=True,
              help="classification-review, span-review, or @FILE.html (a Jinja2 template, "
                   "rendered with autoescape).")
@click.option("--task-ui", "task_ui", type=click.Path(exists=True, dir_okay=False),
              default=None, help="A human task UI, as A2I's: a Liquid template with "
              "crowd-html elements over task.input (the loop's input content as given). The "
              "input then needs no particular field and --labels may be left out.")
@click.option("--webhook", "webhook_urls", multiple=True,
              help="URL receiving human-loop status changes (repeatable).")
@setting_options("webhook_secret")
@click.option("--feature-group", default="",
              help="Also write each reviewed label, with its provenance (model label and "
                   "confidence, reviewers, agreement), into this feature group.")
@click.option("--id-field", default="",
              help="Input field that keys the feature group's records (e.g. review_id); "
                   "default the loop name.")
@home_option
@handle_errors
def create_flow(name: str, team: str, labels: str, output: str, title: str, description: str,
                task_count: int, time_limit: int, lifetime: int, conditions: str | None,
                template: str, task_ui: str | None, webhook_urls: tuple[str, ...],
                webhook_secret: str | None, feature_group: str, id_field: str,
                home: str | None) -> None:
    """Create flow definition NAME (and the streaming job its reviewers work in)."""
    from loopworks.files import is_local, local_path
    from loopworks.review.flows import FlowDefinition

    classes = [x.strip() for x in labels.split(",") if x.strip()]
    if not classes and task_ui is None:
        raise ConfigurationError("--labels names no class", setting="labels")
    if is_local(output):
        # Loops complete in whichever process settles them (CLI, server): not a relative path.
        output = str(local_path(output).resolve())
    document = _json_or_file(conditions, "--conditions") if conditions else None
    webhook_secret = load_settings(home=home, webhook_secret=webhook_secret).webhook_secret
    spec = FlowDefinition(
        name, team, classes, output, title=title, description=description,
        template=_template(template), task_count=task_count, time_limit_seconds=time_limit,
        availability_lifetime_seconds=lifetime, activation_conditions=document,
        webhooks=list(webhook_urls), webhook_secret=webhook_secret,
        feature_group=feature_group, id_field=id_field,
        task_ui=Path(task_ui).read_text(encoding="utf-8") if task_ui else "")
    created = _review(home).create_flow(spec)
    rule = "every input" if not document or not document.get("Conditions") \
        else f"{len(document['Conditions'])} activation condition(s)"
    click.echo(f"created flow {created.name!r} for team {team!r}: {len(classes)} classes, "
               f"{task_count} reviewer(s) per loop, {rule}; output → {output}")


def _flow_dict(spec: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(spec)
    if out.get("webhook_secret"):
        out["webhook_secret"] = "***"
    if spec.template not in _BUILT_IN_TEMPLATES:
        out["template"] = f"(custom Jinja2 template, {len(spec.template):,} characters)"
    return {"arn": spec.arn, **out, "job": spec.job_name}


@flow.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def list_flows(as_json: bool, home: str | None) -> None:
    """Every flow definition, oldest first."""
    specs = _review(home).flows()
    if as_json:
        _echo_json([_flow_dict(s) for s in specs])
        return
    if not specs:
        click.echo("no flow definitions")
        return
    from rich.table import Table

    table = Table()
    table.add_column("flow", no_wrap=True, min_width=max(len(s.name) for s in specs))
    for column in ("team", "classes", "reviewers", "conditions", "created"):
        table.add_column(column, overflow="fold")
    for s in specs:
        members = (s.activation_conditions or {}).get("Conditions") or []
        kinds = ", ".join(m.get("ConditionType", "/".join(k for k in m if k in ("And", "Or")))
                          for m in members if isinstance(m, dict)) or "(always)"
        table.add_row(s.name, s.team, ",".join(s.labels), str(s.task_count), kinds,
                      s.created_at[:10])
    plain_console().print(table)


@flow.command("describe")
@click.argument("name")
@home_option
@handle_errors
def describe_flow(name: str, home: str | None) -> None:
    """Flow definition NAME as JSON."""
    _echo_json(_flow_dict(_review(home).flow(name)))


@flow.command("delete")
@click.argument("name")
@home_option
@handle_errors
def delete_flow(name: str, home: str | None) -> None:
    """Delete flow NAME with its loops and job (refused while loops are in progress)."""
    _review(home).delete_flow(name)
    click.echo(f"deleted flow {name!r}")


# ------------------------------------------------------------------------------- loops
flow_option = click.option("--flow", "flow_name", required=True, help="Flow definition name.")


@review.command("start")
@click.argument("name")
@flow_option
@click.option("--input", "input_content", required=True,
              help="Input content as JSON, inline or @FILE: the text under 'text' (or "
                   "'source') and the model's 'probabilities' {class: p}.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def start(name: str, flow_name: str, input_content: str, as_json: bool,
          home: str | None) -> None:
    """Start human loop NAME if the flow's activation conditions hold for the input."""
    content = _json_or_file(input_content, "--input")
    if not isinstance(content, dict):
        raise InputError("--input must be a JSON object", setting="input")
    result = _review(home).start_human_loop(name, flow_name, content)
    if as_json:
        _echo_json({"started": result.started, "reason": result.reason,
                    "conditions_fired": result.conditions_fired,
                    "loop": result.loop.describe() if result.loop else None})
        return
    if not result.started:
        click.echo(f"no human loop: {result.reason} for {name!r}; the model's answer stands")
        return
    fired = ", ".join(result.conditions_fired) or "-"
    if result.reason == "exists" and result.loop is not None:
        click.echo(f"human loop {name!r} already exists ({result.loop.status.value}); "
                   f"conditions fired: {fired}")
    else:
        click.echo(f"started human loop {name!r} in flow {flow_name!r}; conditions fired: "
                   f"{fired}")


@review.command("list")
@click.option("--flow", "flow_name", default=None, help="Only this flow's loops.")
@click.option("--status", type=click.Choice(_STATUSES), default=None, help="Only this status.")
@click.option("--created-after", default=None, help="ISO date/time (UTC when no offset).")
@click.option("--created-before", default=None, help="ISO date/time (UTC when no offset).")
@click.option("--max", "max_results", type=click.IntRange(1, 1000), default=100,
              show_default=True, help="Loops per page.")
@click.option("--next-token", default=None, help="Token printed by the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (loops and next token).")
@home_option
@handle_errors
def list_loops(flow_name: str | None, status: str | None, created_after: str | None,
               created_before: str | None, max_results: int, next_token: str | None,
               as_json: bool, home: str | None) -> None:
    """Human loops, oldest first, a page at a time."""
    page, token = _review(home).list_human_loops(
        flow_name, status=status, created_after=_when(created_after, "--created-after"),
        created_before=_when(created_before, "--created-before"), max_results=max_results,
        next_token=next_token)
    if as_json:
        _echo_json({"HumanLoopSummaries": [
            {"HumanLoopName": p.name, "HumanLoopStatus": p.status.value,
             "FlowDefinitionArn": f"loopworks:flow-definition/{p.flow}",
             "CreationTime": p.created_at.isoformat(),
             **({"FailureReason": p.failure_reason} if p.failure_reason else {})}
            for p in page], "NextToken": token})
        return
    if not page:
        click.echo("no human loops")
    else:
        from rich.table import Table

        table = Table()
        table.add_column("loop", no_wrap=True, min_width=max(len(p.name) for p in page))
        for column in ("flow", "status", "created (UTC)", "conditions fired / failure"):
            table.add_column(column, overflow="fold")
        for p in page:
            detail = p.failure_code or ", ".join(c.split(" ", 1)[-1]
                                                 for c in p.conditions_fired)
            table.add_row(p.name, p.flow, p.status.value,
                          p.created_at.strftime("%Y-%m-%d %H:%M:%S"), detail)
        plain_console().print(table)
    if token:
        click.echo(f"more: --next-token {token}")


@review.command("describe")
@click.argument("name")
@flow_option
@home_option
@handle_errors
def describe(name: str, flow_name: str, home: str | None) -> None:
    """Human loop NAME as JSON (A2I's DescribeHumanLoop shape)."""
    _echo_json(_review(home).describe_human_loop(name, flow_name).describe())


@review.command("stop")
@click.argument("name")
@flow_option
@home_option
@handle_errors
def stop(name: str, flow_name: str, home: str | None) -> None:
    """Stop human loop NAME: its task is withdrawn from the reviewers."""
    loop = _review(home).stop_human_loop(name, flow_name)
    click.echo(f"human loop {name!r} is {loop.status.value}")


@review.command("delete")
@click.argument("name")
@flow_option
@home_option
@handle_errors
def delete(name: str, flow_name: str, home: str | None) -> None:
    """Delete human loop NAME (only when Completed, Failed or Stopped)."""
    _review(home).delete_human_loop(name, flow_name)
    click.echo(f"deleted human loop {name!r}")


@review.command("summary")
@flow_option
@home_option
@handle_errors
def summary(flow_name: str, home: str | None) -> None:
    """Loops by status, share sent to people, model-vs-reviewer agreement (JSON)."""
    _echo_json(_review(home).summary(flow_name))


# ------------------------------------------------------------------------------ batch
@review.command("run")
@flow_option
@click.option("--predictions", required=True,
              help="Predictions file, folder or glob (Parquet, CSV or JSON Lines) with the "
                   "text and a prob_<class> column per class of the flow, as `loopworks "
                   "predict` writes them.")
@click.option("--text-column", default=None,
              help="Text column (default: the first of review_body, review_text, text, "
                   "'Review Text', content, body, source, as `loopworks predict`).")
@click.option("--id-column", default=None,
              help="Column naming each prediction (default: review_id or id when present; "
                   "else loop names come from a hash of the content).")
@click.option("--name-prefix", default="", help="Put before every loop name.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000,
              show_default=True, help="Predictions per batched start.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@home_option
@handle_errors
def run(flow_name: str, predictions: str, text_column: str | None, id_column: str | None,
        name_prefix: str, batch_size: int, as_json: bool, home: str | None) -> None:
    """Start human loops for every prediction in a file that meets the flow's conditions.

    Loop names are the prefix plus the id (or a content hash), so running the same file
    again starts nothing new.
    """
    from loopworks.cli._progress import RowsProgress
    from loopworks.review.batch import start_from_predictions

    with RowsProgress() as progress:
        report = start_from_predictions(
            _review(home), flow_name, predictions, text_column=text_column,
            id_column=id_column, name_prefix=name_prefix, batch_size=batch_size,
            progress=progress)
    if as_json:
        _echo_json(report.to_dict())
        return
    share = f"{report.human_share:.1%}" if report.human_share is not None else "-"
    click.echo(f"evaluated {report.evaluated:,} predictions from {predictions} "
               f"(loop names from the {report.naming})")
    click.echo(f"sent to people: {report.sent_to_people:,} ({share}): {report.started:,} "
               f"loops started, {report.existing:,} already existed; "
               f"{report.not_activated:,} kept the model's label")
    if report.duplicates:
        click.echo(f"skipped {report.duplicates:,} rows repeating an earlier row")
    for condition, n in report.fired.items():
        click.echo(f"  {condition}: fired {n:,} times")
    click.echo(f"took {report.seconds:.1f} s")
