"""``loopworks label``: labeling jobs' tools (consolidation first)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from loopworks.cli import handle_errors
from loopworks.errors import ConfigurationError


@click.group()
def label() -> None:
    """Labeling: consolidate answers into labels (jobs and the annotator UI come next)."""


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
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        if path.suffix == ".parquet":
            result.labels.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            result.labels.to_csv(tmp, index=False)
        else:
            raise ConfigurationError("--out must end in .csv or .parquet", setting="out")
        tmp.replace(path)
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
    console = Console()
    table_view = Table(title=f"{answers} · {method}")
    table_view.add_column("figure")
    table_view.add_column("value", justify="right")
    for key, value in summary.items():
        if value is not None:
            table_view.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table_view)
    console.print("labels: " + ", ".join(
        f"{k}: {v:,}" for k, v in result.labels[label_column].value_counts().items()))


def _read_gold(path: str, item: str, label: str) -> object:
    import pandas as pd

    frame = pd.read_parquet(path) if path.endswith((".parquet", ".pq")) else pd.read_csv(path)
    # The truth-inference benchmark's layout: question,truth.
    if "truth" in frame.columns and label not in frame.columns:
        frame = frame.rename(columns={"truth": label})
    if "question" in frame.columns and item not in frame.columns:
        frame = frame.rename(columns={"question": item})
    return frame
