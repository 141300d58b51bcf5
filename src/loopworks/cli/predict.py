"""``loopworks predict``: a saved model's predictions, with confidence, for every row."""

from __future__ import annotations

import click

from loopworks.cli import handle_errors
from loopworks.cli._common import home_option, plain_console
from loopworks.cli._progress import RowsProgress


@click.command()
@click.option("--model", "model_ref", required=True,
              help="Saved model: NAME (latest version) or NAME:VERSION.")
@click.option("--input", "input_", required=True,
              help="CSV, JSON Lines or Parquet file, folder or glob.")
@click.option("--out", required=True,
              help="Output file; .parquet, .csv or .jsonl (parent folders are created).")
@click.option("--text-column", default=None,
              help="Column with the text. Default: the first of review_body, review_text, "
                   "text, 'Review Text', content, body.")
@click.option("--on-empty", type=click.Choice(["error", "skip"]), default="error",
              show_default=True,
              help="Rows with empty text: fail naming them, or keep them without a prediction.")
@click.option("--batch-rows", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Rows predicted per call.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@home_option
@handle_errors
def predict(model_ref: str, input_: str, out: str, text_column: str | None, on_empty: str,
            batch_rows: int, quiet: bool, home: str | None) -> None:
    """Write every input row plus prediction, confidence and prob_<class> columns.

    The confidence is the model's calibrated top-class probability; human-review flows
    compare it with their thresholds.

    \b
    Example:
      loopworks predict --model sentiment --input reviews.csv --out predictions.parquet
    """
    from loopworks.models import load_model, predict_file
    from loopworks.models.batch import output_format

    output_format(out)  # fail on a bad suffix before loading anything
    model = load_model(model_ref, home=home)
    with RowsProgress(enabled=False if quiet else None) as bar:
        report = predict_file(model, input_, out, text_column=text_column, on_empty=on_empty,
                              progress=bar, batch_rows=batch_rows)
    labels = ", ".join(f"{name} {n:,}" for name, n in report.by_label.items())
    rate = report.rows / report.seconds if report.seconds else 0.0
    plain_console().print(
        f"wrote {report.rows:,} rows to {report.out} with model {report.model} "
        f"({report.seconds:.2f}s, {rate:,.0f} rows/s)\n"
        f"predicted: {labels}  ·  mean confidence {report.mean_confidence:.3f}"
        + (f"  ·  {report.empty:,} empty-text rows left without a prediction"
           if report.empty else ""))
