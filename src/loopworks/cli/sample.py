"""``loopworks sample``: synthetic sample data sets, generated here."""

from __future__ import annotations

from pathlib import Path

import click

from loopworks.cli import handle_errors


@click.group()
def sample() -> None:
    """Generate sample data sets (synthetic, made here)."""


@sample.command("reviews")
@click.option("--rows", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Number of reviews to generate.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file; .csv, .jsonl/.json or .parquet (parent folders are created).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed; the same seed gives the same data.")
@click.option("--broken/--no-broken", default=True, show_default=True,
              help="Include ~0.5% deliberately broken rows (empty text, bad or missing rating).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="Output format; by default taken from the --out extension.")
@handle_errors
def reviews(rows: int, out: Path, seed: int, broken: bool, fmt: str | None) -> None:
    """Write synthetic clothing-shop product reviews (ratings, titles, review text).

    All text is built from phrase templates written for loopworks; nothing is copied.
    """
    from loopworks.samples.reviews import (
        broken_counts,
        generate_reviews,
        output_format,
        write_reviews,
    )

    fmt = output_format(out, fmt)  # fail on a bad extension before generating anything
    table = generate_reviews(rows, seed=seed, broken=broken)
    path = write_reviews(table, out, format=fmt)
    counts = broken_counts(table)
    detail = ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in counts.items())
    click.echo(f"wrote {table.num_rows:,} reviews ({fmt}) to {path} | broken rows: "
               f"{detail if sum(counts.values()) else 'none'}")
