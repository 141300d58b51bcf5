"""``loopworks label``: labeling jobs' tools (consolidation first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console, services
from loopworks.cli.config import setting_options
from loopworks.errors import ConfigurationError
from loopworks.models.classifier import AUTO_LABEL_FEATURES
from loopworks.settings import load_settings

if TYPE_CHECKING:
    from loopworks.labeling.jobs import LabelingJobs


@click.group()
def label() -> None:
    """Labeling jobs: create, add items, simulate, stop, export; consolidate any answers."""


@label.command()
@click.argument("answers")
@click.option("--method", type=click.Choice(["dawid-skene", "majority-vote", "one-coin", "glad",
                                             "mace"]),
              default="dawid-skene", show_default=True,
              help="Aggregation: worker-reliability models or a plain vote (glad/mace need "
                   "the crowd extra).")
@click.option("--item-column", default="item", show_default=True, help="Item id column.")
@click.option("--worker-column", default="worker", show_default=True, help="Worker id column.")
@click.option("--label-column", default="label", show_default=True, help="Answer column.")
@click.option("--gold", default=None,
              help="CSV/Parquet of known answers (item and label columns, same names, or "
                   "question/truth) to score the result and each worker.")
@click.option("--out", default=None, help="Write one row per item (.csv or .parquet).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@handle_errors
def consolidate(answers: str, method: str, item_column: str, worker_column: str,
                label_column: str, gold: str | None, out: str | None, as_json: bool) -> None:
    """Consolidate an answers table (one row per item, worker, answer) into one label per
    item with a confidence, per-worker quality and agreement figures."""
    from loopworks.labeling import consolidate as run
    from loopworks.labeling import fleiss_kappa, krippendorff_alpha, read_answers

    table = read_answers(answers, item=item_column, worker=worker_column, label=label_column)
    gold_table = None
    if gold:
        gold_table = _read_gold(gold, item_column, label_column)
    result = run(table, method, item=item_column, worker=worker_column, label=label_column,
                 gold=gold_table)
    kappa = fleiss_kappa(table, item=item_column, worker=worker_column, label=label_column)
    alpha = krippendorff_alpha(table, item=item_column, worker=worker_column,
                               label=label_column)
    if out:
        _write_labels(result.labels, out)
    summary = {
        "method": result.method, "items": int(len(result.labels)),
        "workers": int(len(result.worker_quality)), "answers": int(len(table)),
        "iterations": result.iterations, "gold_accuracy": result.gold_accuracy,
        "mean_confidence": float(result.labels["confidence"].mean()),
        "fleiss_kappa": kappa, "krippendorff_alpha": alpha, "out": out,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=float))
        return
    console = plain_console()
    table_view = Table(title=f"{answers} · {method}")
    table_view.add_column("figure")
    table_view.add_column("value", justify="right")
    for key, value in summary.items():
        if value is not None:
            table_view.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table_view)
    console.print("labels: " + ", ".join(
        f"{k}: {v:,}" for k, v in result.labels[label_column].value_counts().items()))


def _write_labels(labels: Any, out: str) -> None:
    """One row per item, as CSV or Parquet (pandas' own writers), atomically."""
    from loopworks.files import atomic_write

    if out.endswith(".parquet"):
        atomic_write(out, lambda fh: labels.to_parquet(fh, index=False))
    elif out.endswith(".csv"):
        atomic_write(out, labels.to_csv(index=False))
    else:
        raise ConfigurationError("--out must end in .csv or .parquet", setting="out")


def _read_gold(path: str, item: str, label: str) -> object:
    from loopworks.files import read_table

    fmt = "parquet" if path.endswith((".parquet", ".pq")) else "csv"
    frame = read_table(path, input_format=fmt, infer_types=True).to_pandas()
    # The truth-inference benchmark's layout: question,truth.
    if "truth" in frame.columns and label not in frame.columns:
        frame = frame.rename(columns={"truth": label})
    if "question" in frame.columns and item not in frame.columns:
        frame = frame.rename(columns={"question": item})
    return frame


def _jobs(home: str | None) -> LabelingJobs:
    return services(home).labeling


def _task_types() -> list[Any]:
    from loopworks.labeling.tasktypes import TaskType

    return list(TaskType)



@label.command("create-job")
@click.argument("name")
@click.option("--manifest", default=None,
              help="Input manifest (JSON Lines with 'source' text or 'source-ref' per line; "
                   "image jobs: 'source-ref' image files), or a CSV/Parquet file with a text "
                   "column.")
@click.option("--query", default=None,
              help="Instead of --manifest: SQL over the feature groups (e.g. \"SELECT review_id,"
                   " review_body FROM reviews_latest WHERE split_type = 'test'\"); one item "
                   "per row, --text-column is the text.")
@click.option("--text-column", default="review_body", show_default=True,
              help="Text column of a CSV/Parquet input or of the query's result.")
@click.option("--limit", type=int, default=None,
              help="Only the first N rows of a CSV/Parquet or query.")
@click.option("--team", required=True, help="Team whose workers label it.")
@click.option("--labels", default="", help="Comma-separated label set, e.g. neg,neu,pos "
              "(needed by every task type but custom).")
@click.option("--task-type", type=click.Choice([t.value for t in _task_types()]),
              default="text-classification", show_default=True,
              help="What workers do; custom: the form of --template.")
@click.option("--template", "template_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="The task page: Liquid with crowd-html elements, as Ground "
              "Truth's templates (task.input.taskObject is the item's source or source-ref, "
              "task.input.labels the labels; the manifest line's fields are there too). A "
              "custom job needs one; a built-in task type without one shows its built-in "
              "template, and with one reads its answer from the element of its kind.")
@click.option("--multi-label", is_flag=True,
              help="Shorthand for --task-type text-classification-multilabel.")
@click.option("--workers-per-item", type=int, default=1, show_default=True,
              help="Answers wanted per item.")
@click.option("--time-limit", type=int, default=300, show_default=True,
              help="Seconds a worker may hold a task before it returns to the queue.")
@click.option("--max-concurrent-items", type=int, default=None,
              help="At most this many items in flight at once (leased or partly answered): "
                   "Ground Truth's MaxConcurrentTaskCount. Default: no cap.")
@click.option("--instructions", default="", help="What annotators should do.")
@click.option("--examples", "examples_file", default=None,
              help="JSON file with a list of examples shown to workers.")
@click.option("--lifetime", type=int, default=10 * 24 * 3600, show_default=True,
              help="Seconds items stay available; those unlabeled then are marked failed.")
@click.option("--deadline", default=None,
              help="ISO date and time after which unlabeled items are marked failed.")
@click.option("--adaptive-target", type=float, default=None,
              help="Adaptive redundancy: keep asking while an item's majority share is below "
                   "this (needs --max-workers).")
@click.option("--max-workers", type=int, default=None,
              help="Adaptive redundancy: most answers per item.")
@click.option("--webhook", "webhook_urls", multiple=True,
              help="URL receiving item.labeled and job.completed events (repeatable).")
@setting_options("webhook_secret")
@click.option("--auto-label", is_flag=True,
              help="Automated labeling (text classification, 1,250 items or more): people "
                   "label a random sample, a model labels the items it is sure of, the most "
                   "uncertain go to people next, round after round.")
@click.option("--target-accuracy", type=float, default=0.95, show_default=True,
              help="Auto-label: accuracy the machine labels must reach on the validation "
                   "items (a Wilson lower bound at --assurance, allowing for people's own "
                   "mistakes).")
@click.option("--batch-size", type=int, default=None,
              help="Auto-label: items people get per round (default 5% of the items, at "
                   "least 100).")
@click.option("--budget", type=int, default=None,
              help="Auto-label: most items people label; items the model is still unsure "
                   "of when it is spent are marked failed.")
@click.option("--diversity", is_flag=True,
              help="Auto-label: spread each batch for people over k-means clusters of the "
                   "uncertain items instead of taking only the most uncertain.")
@click.option("--auto-label-seed", type=int, default=0, show_default=True,
              help="Auto-label: seed of the random first sample.")
@click.option("--annotator-accuracy", type=float, default=None,
              help="Auto-label: how often people are right (0.5-1], so their mistakes do "
                   "not count against the model. Default: measured on items whose manifest "
                   "line has a 'gold' answer (they go to people first), else 1.")
@click.option("--assurance", type=float, default=0.95, show_default=True,
              help="Auto-label: how sure the job must be that machine labels reach the "
                   "target (the one-sided level of its bounds); 0.5 takes the validation "
                   "accuracy as measured, as Ground Truth does.")
@click.option("--model-features", default="word+char", show_default=True,
              type=click.Choice(AUTO_LABEL_FEATURES),
              help="Auto-label: what the model reads; '+embedding' adds sentence embeddings "
                   "to the TF-IDF n-grams; 'fine-tuned' fine-tunes the MiniLM encoder itself "
                   "(most machine labels; ~21 CPU-minutes per 10,000 items on the real "
                   "reviews, later rounds continuing from the last one's model). Both need "
                   "the embeddings extra.")
@click.option("--roles", default="annotator", show_default=True,
              help="Who takes the tasks besides admins: annotator, reviewer, or "
                   "annotator,reviewer.")
@home_option
@handle_errors
def create_job(name: str, manifest: str | None, query: str | None, text_column: str,
               limit: int | None, team: str,
               labels: str, task_type: str, multi_label: bool, workers_per_item: int,
               time_limit: int, instructions: str, examples_file: str | None, lifetime: int,
               deadline: str | None, adaptive_target: float | None, max_workers: int | None,
               webhook_urls: tuple[str, ...], webhook_secret: str | None, auto_label: bool,
               target_accuracy: float, batch_size: int | None, budget: int | None,
               diversity: bool, auto_label_seed: int, annotator_accuracy: float | None,
               assurance: float, model_features: str, roles: str, template_file: str | None,
               max_concurrent_items: int | None, home: str | None) -> None:
    """Create labeling job NAME from an input manifest, a CSV/Parquet file or a feature-store
    query."""
    from loopworks.labeling.jobs import JobSpec, TaskType

    if (manifest is None) == (query is None):
        raise ConfigurationError("give either --manifest or --query", setting="manifest")

    kind = TaskType.TEXT_CLASSIFICATION_MULTILABEL if multi_label else TaskType(task_type)
    if kind is TaskType.CUSTOM and template_file is None:
        raise ConfigurationError("a custom job needs --template", setting="template")
    template = Path(template_file).read_text(encoding="utf-8") if template_file else ""
    examples: list[Any] = []
    if examples_file:
        try:
            examples = json.loads(Path(examples_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"--examples {examples_file}: {exc}",
                                     setting="examples") from None
    adaptive = None
    if adaptive_target is not None or max_workers is not None:
        if adaptive_target is None or max_workers is None:
            raise ConfigurationError("adaptive redundancy needs both --adaptive-target and "
                                     "--max-workers", setting="adaptive")
        adaptive = {"target_confidence": adaptive_target, "max_workers": max_workers}
    webhook_secret = load_settings(home=home, webhook_secret=webhook_secret).webhook_secret
    spec = JobSpec(name, team, [x.strip() for x in labels.split(",") if x.strip()], kind,
                   instructions, workers_per_item, time_limit, examples=examples,
                   availability_lifetime_seconds=lifetime, deadline=deadline,
                   adaptive=adaptive, webhooks=list(webhook_urls),
                   webhook_secret=webhook_secret,
                   roles=[r.strip() for r in roles.split(",") if r.strip()],
                   template=template, max_concurrent_items=max_concurrent_items,
                   auto_label={"target_accuracy": target_accuracy, "batch_size": batch_size,
                               "budget": budget, "diversity": diversity,
                               "seed": auto_label_seed,
                               "annotator_accuracy": annotator_accuracy,
                               "features": model_features, "assurance": assurance}
                   if auto_label else None)
    source: Any = manifest
    if query is not None:
        from loopworks.labeling.manifest import frame_items

        store = services(home).features
        source = frame_items(store.query(query), text_column, "the query's result", limit)
    elif manifest is not None and manifest.lower().endswith((".csv", ".parquet", ".pq")):
        from loopworks.labeling.jobs import read_table_items

        source = read_table_items(manifest, text_column, limit)
    created = _jobs(home).create_job(spec, source)
    click.echo(f"created job {name!r}: {created.counts['items']:,} items for team {team!r}")
    if auto_label:
        opened = created.counts["items"] - created.counts["held"]
        click.echo(f"automated labeling: people label a random {opened:,} items first; "
                   f"{created.counts['held']:,} are held for the model and later rounds")


@label.command("add-items")
@click.argument("name")
@click.option("--manifest", required=True,
              help="Input manifest (JSON Lines) or CSV/Parquet with a text column.")
@click.option("--text-column", default="review_body", show_default=True,
              help="Text column of a CSV/Parquet input.")
@home_option
@handle_errors
def add_items(name: str, manifest: str, text_column: str, home: str | None) -> None:
    """Add items to running job NAME (they queue after the existing ones)."""
    source: Any = manifest
    if manifest.lower().endswith((".csv", ".parquet", ".pq")):
        from loopworks.labeling.jobs import read_table_items

        source = read_table_items(manifest, text_column)
    added = _jobs(home).add_items(name, source)
    click.echo(f"added {added:,} items to job {name!r}")


@label.command("expire")
@home_option
@handle_errors
def expire(home: str | None) -> None:
    """Apply deadlines and expired leases to every running job now (reads do this too)."""
    changed = _jobs(home).expire_due()
    click.echo(json.dumps(changed, indent=2))


@label.command("webhooks")
@click.argument("name")
@click.option("--deliver", "wait", type=float, default=None,
              help="Deliver pending events now, waiting up to this many seconds.")
@home_option
@handle_errors
def webhooks(name: str, wait: float | None, home: str | None) -> None:
    """Webhook deliveries of job NAME (pending, delivered, gave-up) as JSON."""
    import time

    from loopworks.labeling.webhooks import deliveries

    jobs = _jobs(home)
    with jobs.engine.connect() as conn:
        job_id = jobs.job_row(conn, name).id
    if wait is not None:
        end = time.monotonic() + wait
        while time.monotonic() < end and any(d["state"] == "pending"
                                             for d in deliveries(jobs.engine, job_id)):
            time.sleep(min(jobs.webhooks.deliver_due(), max(0.0, end - time.monotonic())))
    click.echo(json.dumps(deliveries(jobs.engine, job_id), indent=2, default=str))


@label.command("status")
@click.argument("name")
@home_option
@handle_errors
def status(name: str, home: str | None) -> None:
    """Status and counters of job NAME as JSON (items, labeled, unlabeled, failed, answers,
    and Ground Truth's total/human-labeled/machine-labeled)."""
    lw = services(home)
    spec = lw.labeling.job(name)
    extra: dict[str, Any] = {"failure_reason": spec.failure_reason} \
        if spec.failure_reason else {}
    if spec.auto_label is not None:
        extra["auto_label"] = spec.auto_label
        extra["rounds"] = [r.to_dict() for r in lw.auto_label.labeler.rounds(name)]
    click.echo(json.dumps({"job": name, "status": spec.status.value, **spec.counts, **extra},
                          indent=2))


ROUNDS_NOTE = ("val. acc: accuracy (against people's labels) of the validation items "
               "machine-labeled so far (how many / the uncovered validation items this "
               "round's threshold was chosen among); people: how often people were taken "
               "to be right (measured on gold answers, or given); model: version of "
               "autolabel-<job>")


def _round_table(title: str, reports: list[Any]) -> Table:
    from rich import box

    view = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                 collapse_padding=True)
    failed = any(r.failed for r in reports)
    # People's accuracy only when a round allowed for their mistakes (gold or given).
    people = any(r.annotator_accuracy not in (None, 1.0) for r in reports)
    columns = ["round", "human", "machine", "threshold", "val. acc",
               *(["people"] if people else []), "to people",
               *(["failed"] if failed else []), "held", "CPU s", "model"]
    for column in columns:
        view.add_column(column, justify="left" if column == "model" else "right",
                        no_wrap=True)
    for r in reports:
        view.add_row(str(r.round), f"{r.human_labels:,}", f"{r.machine_labels:,}",
                     "—" if r.threshold is None else f"{r.threshold:.3f}",
                     "—" if r.validation_accuracy is None else
                     f"{r.validation_accuracy:.3f} ({r.validation_items}/{r.validation_pool})",
                     *([_people(r)] if people else []),
                     f"{r.sent_to_people:,}", *([f"{r.failed:,}"] if failed else []),
                     f"{r.held_left:,}",
                     "—" if r.cpu_seconds is None else f"{r.cpu_seconds:,.1f}",
                     (r.model_version or "—").rpartition(":")[2])
    return view


def _people(report: Any) -> str:
    if report.annotator_accuracy is None:
        return "—"
    gold = f" ({report.gold_answers} gold)" if report.gold_answers else ""
    return f"{report.annotator_accuracy:.3f}{gold}"


@label.command("rounds")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the rounds as JSON.")
@home_option
@handle_errors
def rounds(name: str, as_json: bool, home: str | None) -> None:
    """Automated-labeling rounds of job NAME: per round the human labels it learned from,
    the items its model labeled, the chosen confidence threshold and the validation
    accuracy it was chosen for."""
    lw = services(home)
    spec = lw.labeling.job(name)
    if spec.auto_label is None:
        raise ConfigurationError(f"job {name!r} does not use automated labeling",
                                 setting="auto_label")
    reports = lw.auto_label.labeler.rounds(name)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    console = plain_console()
    console.print(_round_table(f"{name} · target accuracy "
                               f"{spec.auto_label['target_accuracy']:.2f}", reports))
    console.print(ROUNDS_NOTE)
    c = spec.counts
    console.print(f"{spec.status.value}: {c['human-labeled']:,} human-labeled, "
                  f"{c['machine-labeled']:,} machine-labeled, {c['failed']:,} failed, "
                  f"{c['held']:,} held, {c['unlabeled'] - c['held']:,} open")


@label.command("advance")
@click.argument("name")
@home_option
@handle_errors
def advance(name: str, home: str | None) -> None:
    """Run job NAME's next automated-labeling round now, if one is due (no item open, some
    held); the server does this by itself after the answer that closes a round."""
    report = services(home).auto_label.labeler.advance(name)
    if report is None:
        click.echo(f"no round due for job {name!r} (items are still open, none is held, or "
                   "the job is not in progress)")
        return
    plain_console().print(_round_table(f"{name} · round {report.round}", [report]))


@label.command("simulate")
@click.argument("name")
@click.option("--accuracy", default="0.9,0.8,0.7", show_default=True,
              help="Comma-separated accuracies, one simulated worker each.")
@click.option("--truth-field", default="truth", show_default=True,
              help="Manifest field holding each item's true label.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@home_option
@handle_errors
def simulate_job(name: str, accuracy: str, truth_field: str, seed: int,
                 home: str | None) -> None:
    """Answer job NAME's open tasks with simulated workers of the given accuracy (on an
    automated-labeling job, running its rounds in between until it completes)."""
    from loopworks.labeling.simulate import simulate

    try:
        accuracies = [float(a) for a in accuracy.split(",")]
    except ValueError:
        raise ConfigurationError("--accuracy takes numbers like 0.9,0.8",
                                 setting="accuracy") from None
    def show(report: Any) -> None:
        click.echo(f"round {report.round}: {report.machine_labels:,} machine labels "
                   f"(threshold {report.threshold if report.threshold is not None else '—'}), "
                   f"{report.sent_to_people:,} items to people, {report.held_left:,} held, "
                   f"{report.cpu_seconds or 0:,.1f} CPU s")

    lw = services(home)
    given = simulate(lw.labeling, name, accuracies, truth_field=truth_field, seed=seed,
                     home=lw.home, on_round=show)
    click.echo(f"{len(accuracies)} simulated workers gave {given:,} answers")


@label.command("export")
@click.argument("name")
@click.option("--out", required=True, help="Output folder (manifests/output/output.manifest).")
@click.option("--method", type=click.Choice(["dawid-skene", "majority-vote", "one-coin"]),
              default="dawid-skene", show_default=True, help="Consolidation method.")
@click.option("--feature-group", default=None,
              help="Also write the labels, with provenance, into this feature group.")
@click.option("--id-field", default=None,
              help="Manifest field identifying each item (record id in the feature group).")
@home_option
@handle_errors
def export(name: str, out: str, method: str, feature_group: str | None, id_field: str | None,
           home: str | None) -> None:
    """Consolidate job NAME and write its augmented manifest and raw answers."""
    from loopworks.labeling.output import write_output

    summary = write_output(_jobs(home), name, out, method=method,
                           feature_group=feature_group, id_field=id_field, home=home)
    click.echo(f"{summary['labeled']:,} of {summary['items']:,} items labeled → "
               f"{summary['manifest']}  (raw answers: {summary['answers']})")
    if "feature_group" in summary:
        fg = summary["feature_group"]
        click.echo(f"{fg['records']:,} labels written to feature group {fg['name']!r}")


@label.command("stop")
@click.argument("name")
@home_option
@handle_errors
def stop(name: str, home: str | None) -> None:
    """Stop job NAME: no new tasks are handed out; answers so far are kept. The job is
    Stopping while workers still hold tasks (they may submit them), then Stopped."""
    status = _jobs(home).stop(name)
    click.echo(f"job {name!r} is {status.value}")


@label.command("workers")
@click.argument("name")
@click.option("--gold-field", default="gold", show_default=True,
              help="Manifest field with the known answer of gold items.")
@home_option
@handle_errors
def workers(name: str, gold_field: str, home: str | None) -> None:
    """Answers per worker of job NAME and each worker's accuracy on gold items (JSON)."""
    click.echo(json.dumps(_jobs(home).worker_scores(name, gold_field), indent=2))
