"""``loopworks model``: train, list and describe saved models."""

from __future__ import annotations

import json

import click
from rich import box
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console
from loopworks.errors import ConfigurationError
from loopworks.models.classifier import FEATURE_KINDS


@click.group()
def model() -> None:
    """Models whose predictions people review: train, list, describe.

    \b
    Example:
      loopworks sample reviews --rows 10000 --out reviews.csv
      loopworks process reviews.csv --out features/
      loopworks model train sentiment --input features/
      loopworks predict --model sentiment --input reviews.csv --out predictions.parquet
    """


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise ConfigurationError(f"--split must be three numbers like 80,10,10, not {text!r}",
                                 setting="split")
    total = sum(parts)
    return parts[0] / total, parts[1] / total, parts[2] / total


@model.command()
@click.argument("name")
@click.option("--input", "input_", default=None,
              help="Labeled CSV, JSON Lines or Parquet file, folder or glob; a `loopworks "
                   "process` output folder uses its train/validation/test splits.")
@click.option("--feature-group", default=None,
              help="Train on the latest records of this feature group instead.")
@click.option("--query", default=None,
              help="Train on the result of this SQL over the feature store instead.")
@click.option("--text-column", default=None,
              help="Column with the text. Default: the first of review_body, review_text, "
                   "text, 'Review Text', content, body.")
@click.option("--label-column", default=None,
              help="Column with class names, label ids 0..k-1 or sentiment -1/0/1. Default: "
                   "the first of label_id, label, sentiment, class, class_name.")
@click.option("--rating-column", default=None,
              help="Derive labels from a 1-5 star rating column (1-2 negative, 3 neutral, "
                   "4-5 positive) instead of a label column.")
@click.option("--classes", default="negative,neutral,positive", show_default=True,
              help="Class names for label ids 0,1,2,... (comma-separated).")
@click.option("--split-column", default="split_type", show_default=True,
              help="Column naming each row's split (train/validation/test); when absent, "
                   "rows are split at random, stratified by class.")
@click.option("--split", "split_text", default="80,10,10", show_default=True,
              help="train,validation,test percentages of the random split.")
@click.option("--features", type=click.Choice(FEATURE_KINDS),
              default="word+char", show_default=True,
              help="TF-IDF n-gram features; '+embedding' adds sentence embeddings (needs "
                   "the embeddings extra).")
@click.option("--c", "c_value", type=click.FloatRange(min=0, min_open=True), default=4.0,
              show_default=True, help="Inverse regularisation strength of the classifier.")
@click.option("--calibration", type=click.Choice(["temperature", "sigmoid", "isotonic", "none"]),
              default="temperature", show_default=True,
              help="How the confidence is calibrated on the validation split.")
@click.option("--bins", type=click.IntRange(min=1), default=15, show_default=True,
              help="Equal-width bins of the ECE and the reliability curve.")
@click.option("--skip-invalid", is_flag=True,
              help="Skip (and count) rows with empty text or an unusable label instead of "
                   "failing.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random split and the classifier.")
@click.option("--json", "as_json", is_flag=True, help="Print the model card as JSON.")
@home_option
@handle_errors
def train(name: str, input_: str | None, feature_group: str | None, query: str | None,
          text_column: str | None, label_column: str | None, rating_column: str | None,
          classes: str, split_column: str, split_text: str, features: str, c_value: float,
          calibration: str, bins: int, skip_invalid: bool, seed: int, as_json: bool,
          home: str | None) -> None:
    """Train model NAME: fit on train, calibrate on validation, report on test, save.

    Saves the next version under $LOOPWORKS_HOME/models/NAME/ with model.json (the card),
    report.json and reliability.png.
    """
    from loopworks.models import read_labeled_data, train_model, validate_model_name

    validate_model_name(name)
    if sum(x is not None for x in (input_, feature_group, query)) != 1:
        raise ConfigurationError("give exactly one of --input, --feature-group or --query")
    class_names = tuple(c.strip() for c in classes.split(",") if c.strip())
    console = plain_console(stderr=True)
    data = read_labeled_data(input_, feature_group=feature_group, query=query,
                             text_column=text_column, label_column=label_column,
                             rating_column=rating_column, classes=class_names,
                             split_column=split_column, split=_parse_split(split_text),
                             seed=seed, skip_invalid=skip_invalid, home=home)
    skipped = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in data.skipped.items())
    console.print(f"read {len(data):,} rows from {data.source} (text {data.text_column!r}, "
                  f"label {data.label_column!r}; splits {data.split_origin})"
                  + (f"; skipped {skipped}" if skipped else ""))
    with console.status("training..."):
        result = train_model(name, data, features=features, c=c_value,
                             calibration=calibration, n_bins=bins, seed=seed, home=home,
                             log=lambda message: console.print(f"  {message}"))
    if as_json:
        click.echo(json.dumps(result.card.to_dict(), indent=2))
        return
    print_training(result)


def print_training(result: object) -> None:
    """The metrics table and where the files went."""
    from loopworks.models import TrainingResult

    assert isinstance(result, TrainingResult)
    card, ev = result.card, result.evaluation
    console = plain_console()
    console.print(f"[bold]model {card.name} version {card.version}[/bold]  "
                  f"classes {', '.join(card.classes)}  ({result.seconds:.1f}s)")
    counts = card.training_data["rows_by_split"]
    console.print(f"rows: train {counts['train']:,}  validation {counts['validation']:,}  "
                  f"test {counts['test']:,}  ·  data sha256 {card.training_data['sha256'][:12]}")
    table = Table(title=f"test split ({ev.rows:,} rows)")
    for col in ("metric", "uncalibrated", "calibrated"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    table.add_row("accuracy", f"{ev.accuracy_uncalibrated:.4f}", f"{ev.accuracy:.4f}")
    table.add_row("macro F1", "", f"{ev.macro_f1:.4f}")
    table.add_row(f"ECE ({ev.n_bins} bins)", f"{ev.ece_uncalibrated:.4f}", f"{ev.ece:.4f}")
    table.add_row("log loss", f"{ev.nll_uncalibrated:.4f}", f"{ev.nll:.4f}")
    for cls, f1 in ev.per_class_f1.items():
        table.add_row(f"F1 {cls}", "", f"{f1:.4f}")
    console.print(table)
    calib = card.calibration
    if "temperature" in calib:
        console.print(f"calibration: temperature {calib['temperature']:.3f} fitted on "
                      f"{calib['rows']:,} validation rows")
    console.print(f"saved: {card.path}")
    console.print(f"report: {result.report_path}")
    console.print(f"reliability curve: {result.plot_path}")


@model.command("list")
@click.option("--all", "all_versions", is_flag=True, help="Every version, not just the latest.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@home_option
@handle_errors
def list_models(all_versions: bool, as_json: bool, home: str | None) -> None:
    """List saved models (latest version of each)."""
    from loopworks.models import ModelRegistry

    registry = ModelRegistry(home)
    cards = registry.list(all_versions=all_versions)
    if as_json:
        click.echo(json.dumps([{**c.to_dict(), "path": str(c.path)} for c in cards], indent=2))
        return
    if not cards:
        click.echo("no models yet: see `loopworks model train --help`")
        return
    table = Table(box=box.SIMPLE)
    for col in ("name", "version", "accuracy", "macro F1", "ECE", "train rows", "created"):
        table.add_column(col, no_wrap=col != "name")
    for card in cards:
        test = card.metrics.get("test", {})
        versions = registry.versions(card.name)
        table.add_row(card.name, f"{card.version} of {len(versions)}",
                      _num(test.get("accuracy")), _num(test.get("macro_f1")),
                      _num(test.get("ece")),
                      f"{card.training_data.get('rows_by_split', {}).get('train', 0):,}",
                      card.created[:10])
    plain_console().print(table)


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


@model.command()
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), default=None,
              help="Version to describe (default: the latest). NAME:VERSION works too.")
@home_option
@handle_errors
def describe(name: str, version: int | None, home: str | None) -> None:
    """Print the card of model NAME (JSON): classes, features, data, metrics, files."""
    from loopworks.models import ModelRegistry, parse_model_ref

    ref_name, ref_version = parse_model_ref(name)
    card = ModelRegistry(home).card(ref_name, version or ref_version)
    click.echo(json.dumps({**card.to_dict(), "path": str(card.path)}, indent=2))
