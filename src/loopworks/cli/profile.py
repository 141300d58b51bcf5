"""``loopworks profile``: what max_seq_length costs in truncation and padding."""

from __future__ import annotations

import json

import click
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.cli._common import plain_console
from loopworks.processing.profile import plot_profile, profile_lengths


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--tokenizer", default=None,
              help="Tokenizer as for `loopworks process` (default: offline BERT uncased).")
@click.option("--text-column", default="review_body", show_default=True,
              help="Column with the text.")
@click.option("--input-format", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="Input format, when file names do not tell it.")
@click.option("--max-seq-length", type=int, default=128, show_default=True,
              help="Length to mark on the histogram.")
@click.option("--png", default="length-profile.png", show_default=True,
              help="Where to write the histogram.")
@click.option("--limit", type=int, default=None, help="Profile only the first N texts.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@handle_errors
def profile(inputs: tuple[str, ...], tokenizer: str | None, text_column: str,
            input_format: str | None, max_seq_length: int, png: str, limit: int | None,
            as_json: bool) -> None:
    """Word- and token-length distribution of a text column, the max_seq_length that covers
    95/99/100% of texts, and the truncation and padding each length costs."""
    result = profile_lengths(list(inputs), text_column=text_column, tokenizer=tokenizer,
                             input_format=input_format, limit=limit)
    path = plot_profile(result, png, max_seq_length)
    summary = result.summary()
    summary["png"] = str(path)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console = plain_console()
    console.print(f"{summary['texts']:,} texts · tokenizer {summary['tokenizer']}")
    dist = Table(title="length distribution")
    for col in ("", "mean", "p50", "p90", "p95", "p99", "max"):
        dist.add_column(col, justify="right")
    for name in ("words", "tokens"):
        d = summary[name]
        if d:
            dist.add_row(name, *(f"{d[k]:g}" for k in ("mean", "p50", "p90", "p95", "p99", "max")))
    console.print(dist)
    cover = ", ".join(f"{k}: {v}" for k, v in summary["max_seq_length_covering"].items())
    console.print(f"max_seq_length covering {cover}")
    cost = Table(title="cost of each max_seq_length")
    for col in ("max_seq_length", "truncated", "padding slots"):
        cost.add_column(col, justify="right")
    for c in summary["candidates"]:
        cost.add_row(str(c["max_seq_length"]), f"{c['share_truncated']:.2%}",
                     f"{c['share_padding']:.1%}")
    console.print(cost)
    console.print(f"histogram: {path}")
