"""The embedding job: texts in, one normalised sentence vector per row out.

The driver reads the input (CSV, JSON Lines or Parquet; a file, folder, glob or a
``loopworks process`` output folder), checks it (no empty text, no missing id), cuts the rows
into windows and runs one task per window on the local process pool or on Ray (the engines
of ``loopworks process``). Each worker loads the model once and sorts its window by length so
batches pad little. Results are written in input order as one Parquet file, and optionally
ingested into a feature group.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopworks.embeddings.model import EmbeddingModel, ModelSource, resolve_model
from loopworks.embeddings.runtime import (
    DEFAULT_RUNTIME,
    Encoder,
    check_runtime,
    load_encoder,
    prepare_runtime,
)
from loopworks.errors import ConfigurationError, InputError
from loopworks.files import (
    atomic_write,
    discover_inputs,
    is_local,
    iter_batches,
    local_path,
    read_table,
)
from loopworks.processing.engines import Engine

__all__ = ["EmbedConfig", "EmbedReport", "ProgressCallback", "embed_texts", "run_embedding_job"]

#: ``progress(stage, rows_done_now, rows_total)``; called from the driver only.
ProgressCallback = Callable[[str, int, int], None]
_SPLITS = ("train", "validation", "test")
_MAX_WINDOW = 1024
#: A spawned worker imports PyTorch and loads the model (several seconds on a busy machine)
#: before it embeds anything; below about this many rows per worker it does not pay.
MIN_ROWS_PER_WORKER = 1000


@dataclass
class EmbedConfig:
    """Options of an embedding job.

    Args:
        inputs: Files, folders, globs or URLs; a ``loopworks process`` output folder is read
            as its train/validation/test parts.
        out: Output Parquet file (local path or fsspec URL).
        text_column: Column with the text to embed.
        id_column: Column with a unique id per row (the feature group's record id).
        date_column: Column with the row's event time; when absent, the run's time.
        model: ``None`` (offline all-MiniLM-L6-v2), a local folder or a hub name.
        allow_network: Let a hub model be downloaded.
        batch_size: Texts per forward pass.
        engine: ``local`` or ``ray``.
        workers: Worker processes (or concurrent Ray tasks), each loading the model once.
        ray_address: Ray cluster address; empty starts a local Ray.
        feature_group: Also ingest the vectors into this feature group (created if missing).
        input_format: Force ``csv``, ``jsonl`` or ``parquet``.
        min_rows_per_worker: Use fewer workers when there are fewer rows than this per
            worker (starting one costs more than it saves on a small input).
        runtime: ``onnx`` (ONNX Runtime fp32, the default), ``onnx-int8`` (quantised),
            ``openvino`` (the same graph on OpenVINO), ``openvino-bf16`` (bfloat16 products)
            or ``torch`` (sentence-transformers); the ONNX export is cached in the model
            cache (see :mod:`loopworks.embeddings.runtime`).
    """

    inputs: str | Sequence[str]
    out: str
    text_column: str = "review_body"
    id_column: str = "review_id"
    date_column: str = "date"
    model: str | None = None
    allow_network: bool = False
    batch_size: int = 32
    engine: str = "local"
    workers: int = 1
    ray_address: str = ""
    feature_group: str | None = None
    input_format: str | None = None
    min_rows_per_worker: int = MIN_ROWS_PER_WORKER
    runtime: str = DEFAULT_RUNTIME


@dataclass
class EmbedReport:
    """What an embedding job did."""

    output: str
    model: dict[str, Any]
    rows: int = 0
    dimension: int = 0
    engine: str = "local"
    workers: int = 1
    batch_size: int = 32
    runtime: str = DEFAULT_RUNTIME
    threads: int = 1
    timings: dict[str, float] = field(default_factory=dict)
    feature_group: dict[str, Any] | None = None

    @property
    def sentences_per_second(self) -> float:
        """Rows embedded per second of the embedding stage (model loading included)."""
        seconds = self.timings.get("embed", 0.0)
        return self.rows / seconds if seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["sentences_per_second"] = round(self.sentences_per_second, 1)
        return data


# ------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class EmbedTask:
    """Embed one window of texts."""

    index: int
    texts: list[str]
    source: ModelSource
    batch_size: int
    threads: int
    runtime: str = "torch"
    home: str | None = None


@dataclass
class EmbedResult:
    index: int
    vectors: np.ndarray
    seconds: float


_MODELS: dict[tuple[ModelSource, int, str], Encoder] = {}


def embed_window(task: EmbedTask) -> EmbedResult:
    """Run in a worker: embed one window with the worker's model (loaded on first use)."""
    start = time.perf_counter()
    key = (task.source, task.threads, task.runtime)
    if key not in _MODELS:
        _MODELS.clear()  # one model per worker process
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        _MODELS[key] = load_encoder(task.source, runtime=task.runtime, threads=task.threads,
                                    home=task.home)
    vectors = _MODELS[key].encode(task.texts, batch_size=task.batch_size)
    return EmbedResult(task.index, vectors, time.perf_counter() - start)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _threads_per_worker(engine: Engine, workers: int) -> int:
    """Each worker's share of the cores: threads x workers never above the cores (2 workers
    of 2 threads on 2 cores oversubscribe them and run slower than one)."""
    if engine.kind == "ray" or workers > 1:
        return max(1, _cpus() // max(1, workers))
    return _cpus()


def _workers_for(rows: int, workers: int, min_rows_per_worker: int) -> int:
    """Workers worth starting for ``rows`` texts (never more than asked, at least one)."""
    return max(1, min(workers, rows // max(1, min_rows_per_worker)))


def _window(rows: int, workers: int, batch_size: int) -> int:
    """About four windows per worker (balanced tails), whole batches, at most 1,024 rows."""
    per = math.ceil(rows / max(1, workers * 4)) if rows else batch_size
    window = math.ceil(per / batch_size) * batch_size
    return max(batch_size, min(window, max(_MAX_WINDOW, batch_size)))


def _iter_vectors(texts: Sequence[str], source: ModelSource, *, batch_size: int,
                  engine: Engine, workers: int, progress: ProgressCallback,
                  runtime: str = "torch", home: str | None = None) -> Iterator[np.ndarray]:
    """Vectors per window, in input order (windows finish in any order)."""
    if batch_size < 1:
        raise ConfigurationError(f"batch size must be at least 1, not {batch_size}",
                                 setting="batch_size")
    check_runtime(runtime)
    size = _window(len(texts), workers, batch_size)
    threads = _threads_per_worker(engine, workers)
    if texts:
        prepare_runtime(source, runtime, home)
    tasks = [EmbedTask(i, list(texts[begin : begin + size]), source, batch_size, threads,
                       runtime, home)
             for i, begin in enumerate(range(0, len(texts), size))]
    pending: dict[int, np.ndarray] = {}
    following = 0
    for result in engine.map(embed_window, tasks):
        pending[result.index] = result.vectors
        progress("embed", len(result.vectors), len(texts))
        while following in pending:
            yield pending.pop(following)
            following += 1


def embed_texts(texts: Sequence[str], *, model: str | ModelSource | None = None,
                batch_size: int = 32, engine: str = "local", workers: int = 1,
                ray_address: str = "", allow_network: bool = False,
                progress: ProgressCallback | None = None,
                min_rows_per_worker: int = MIN_ROWS_PER_WORKER,
                runtime: str = DEFAULT_RUNTIME,
                home: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Normalised sentence vectors for a list of texts, on the local pool or Ray.

    Args:
        texts: The texts (none empty).
        model: ``None`` (offline all-MiniLM-L6-v2), a local folder, a hub name or a
            :class:`ModelSource`.
        batch_size: Texts per forward pass.
        engine: ``local`` or ``ray``.
        workers: Worker processes (spawned; each loads the model once). 1 runs here.
        ray_address: Ray cluster address for ``engine="ray"``.
        allow_network: Let a hub model be downloaded.
        progress: Optional ``progress("embed", rows_done_now, rows_total)`` callback.
        min_rows_per_worker: Start fewer workers when there are fewer texts than this per
            worker.
        runtime: One of :data:`~loopworks.embeddings.runtime.RUNTIMES` (``onnx``, ONNX
            Runtime fp32, is the default). Each worker gets the machine's cores divided by the
            workers as threads.
        home: loopworks home folder holding the ONNX export cache; ``None`` resolves
            settings.

    Returns:
        ``(len(texts), dimension)`` float32 array, rows in input order.

    Raises:
        InputError: A text is empty (names the first rows, counted from 1).
        ConfigurationError: Bad model or options.
        MissingDependencyError: The runtime's packages are not installed.
    """
    source = model if isinstance(model, ModelSource) else resolve_model(
        model, allow_network=allow_network)
    _check_texts(list(texts), "texts", lambda i: f"row {i + 1}")
    progress = progress or _no_progress
    workers = _workers_for(len(texts), workers, min_rows_per_worker)
    with Engine(engine, workers, ray_address) as running:
        parts = list(_iter_vectors(texts, source, batch_size=batch_size, engine=running,
                                   workers=workers, progress=progress, runtime=runtime,
                                   home=None if home is None else os.fspath(home)))
    if not parts:
        return np.zeros((0, EmbeddingModel(source).dimension), dtype=np.float32)
    return np.concatenate(parts)


def _no_progress(stage: str, advance: int, total: int) -> None:
    return None


# ------------------------------------------------------------------------------ input
def _expand_inputs(inputs: str | Sequence[str]) -> list[str]:
    """A ``loopworks process`` output folder stands for its split folders (not rejects)."""
    expanded: list[str] = []
    for item in [inputs] if isinstance(inputs, str) else list(inputs):
        folder = local_path(item)
        splits = [folder / s for s in _SPLITS if (folder / s).is_dir()]
        if is_local(item) and (folder / "report.json").is_file() and splits:
            expanded.extend(str(s) for s in splits)
        else:
            expanded.append(item)
    return expanded


def read_texts(config: EmbedConfig, run_time: datetime) -> pa.Table:
    """Read ids, texts and event times from the inputs, checked.

    Raises:
        InputError: A column is missing, a text is empty or an id missing (naming the file and
            row), or an event time cannot be read.
    """
    files = discover_inputs(_expand_inputs(config.inputs), config.input_format)
    parts = []
    for source in files:
        row = 0
        for batch in iter_batches(source):
            names = batch.schema.names
            for column in (config.text_column, config.id_column):
                if column not in names:
                    raise InputError(
                        f"{source.url}: no column {column!r} (columns: {', '.join(names)}); "
                        "choose others with --text-column/--id-column", file=source.url)
            ids = pc.cast(batch.column(config.id_column), pa.string())
            texts = pc.cast(batch.column(config.text_column), pa.string())
            where = _where(source.url, row)
            _check_texts(texts.to_pylist(), config.text_column, where)
            if ids.null_count:
                first = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0]
                raise InputError(f"{where(int(first))}: no id in column {config.id_column!r}",
                                 file=source.url, row=row + int(first) + 1)
            dates = _event_times(batch, config.date_column, run_time, source.url)
            parts.append(pa.table({config.id_column: ids, config.text_column: texts,
                                   _date_name(config): dates}))
            row += batch.num_rows
    table = pa.concat_tables(parts) if parts else pa.table({
        config.id_column: pa.array([], pa.string()), config.text_column: pa.array([], pa.string()),
        _date_name(config): pa.array([], pa.timestamp("us", "UTC"))})
    return table


def _date_name(config: EmbedConfig) -> str:
    return config.date_column or "event_time"


def _where(url: str, offset: int) -> Callable[[int], str]:
    return lambda i: f"{url}, row {offset + i + 1}"


def _check_texts(texts: list[Any], column: str, where: Callable[[int], str]) -> None:
    empty = [i for i, t in enumerate(texts) if t is None or not str(t).strip()]
    if empty:
        shown = "; ".join(where(i) for i in empty[:5])
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise InputError(
            f"{len(empty)} row(s) with empty text in {column!r}: {shown}{more}. Drop or fill "
            "them first (a `loopworks process` output has none: it rejects them).",
            rows=[i + 1 for i in empty[:100]], column=column)


def _event_times(batch: pa.RecordBatch, name: str, run_time: datetime, url: str) -> pa.Array:
    target = pa.timestamp("us", "UTC")
    if not name or name not in batch.schema.names:
        return pa.array([run_time] * batch.num_rows, target)
    column = batch.column(name)
    try:
        if pa.types.is_timestamp(column.type):
            if column.type.tz is None:
                column = pc.assume_timezone(column, "UTC")
            return pc.cast(column, target)
        if pa.types.is_date(column.type):
            return pc.assume_timezone(pc.cast(column, pa.timestamp("us")), "UTC")
        import pandas as pd

        parsed = pd.to_datetime(column.to_pandas(), utc=True)
        if parsed.isna().any():
            raise ValueError(f"row {int(np.flatnonzero(parsed.isna())[0]) + 1} is empty")
        return pa.array(parsed, target)
    except (ValueError, TypeError, pa.ArrowInvalid) as exc:
        raise InputError(f"{url}: cannot read event times in column {name!r}: {exc}",
                         file=url) from None


# ------------------------------------------------------------------------------ driver
def run_embedding_job(config: EmbedConfig, *, home: str | os.PathLike[str] | None = None,
                      progress: ProgressCallback | None = None) -> EmbedReport:
    """Embed the texts of the inputs and write them as Parquet (and into a feature group).

    The output has the id column, the text column, the event-time column and ``embedding``
    (``fixed_size_list<float32>[dimension]``), in input order, with the model kept as
    Parquet metadata. It is written to a temporary name and moved into place at the end.

    Args:
        config: The job's options.
        home: loopworks home folder for the feature store; ``None`` resolves settings.
        progress: Optional ``progress(stage, rows_done_now, rows_total)`` callback.

    Returns:
        An :class:`EmbedReport`.

    Raises:
        InputError: Missing columns, empty texts or missing ids (named by file and row).
        ConfigurationError: Bad options, an unknown model, or an output that is a folder.
        MissingDependencyError: The runtime's packages are not installed.
    """
    progress = progress or _no_progress
    clock = time.perf_counter()
    source = resolve_model(config.model, allow_network=config.allow_network)
    report = EmbedReport(output=config.out, model=asdict(source), engine=config.engine,
                         workers=config.workers, batch_size=config.batch_size,
                         runtime=config.runtime)
    _check_output(config.out)
    table = read_texts(config, datetime.now(UTC))
    report.rows = table.num_rows
    report.workers = workers = _workers_for(table.num_rows, config.workers,
                                            config.min_rows_per_worker)
    report.timings["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    texts = table.column(config.text_column).to_pylist()
    with Engine(config.engine, workers, config.ray_address) as engine:
        report.threads = _threads_per_worker(engine, workers)
        dimension = _write(config, table, _iter_vectors(
            texts, source, batch_size=config.batch_size, engine=engine, workers=workers,
            progress=progress, runtime=config.runtime,
            home=None if home is None else os.fspath(home)), source)
    report.dimension = dimension
    report.timings["embed"] = time.perf_counter() - clock

    if config.feature_group:
        clock = time.perf_counter()
        report.feature_group = _ingest(config, source, dimension, home)
        progress("ingest", report.rows, report.rows)
        report.timings["ingest"] = time.perf_counter() - clock
    report.timings["total"] = sum(report.timings.values())
    return report


def _check_output(out: str) -> None:
    if not is_local(out):
        return
    target = local_path(out)
    if target.is_dir() or out.endswith("/"):
        raise ConfigurationError(f"--out {out} is a folder; give a file name such as "
                                 "embeddings.parquet", setting="out")


def _write(config: EmbedConfig, table: pa.Table, vectors: Iterator[np.ndarray],
           source: ModelSource) -> int:
    """Stream the vectors into the Parquet file in order; returns the dimension."""
    dimension = 0

    def write(handle: IO[bytes]) -> None:
        nonlocal dimension
        writer: pq.ParquetWriter | None = None
        done = 0
        for part in vectors:
            dimension = part.shape[1]
            flat = pa.array(part.astype(np.float32, copy=False).ravel(), pa.float32())
            chunk = table.slice(done, len(part)).append_column(
                "embedding", pa.FixedSizeListArray.from_arrays(flat, dimension))
            if writer is None:
                metadata = {"model": asdict(source), "dimension": dimension,
                            "normalized": True, "text_column": config.text_column}
                schema = chunk.schema.with_metadata(
                    {b"loopworks": json.dumps(metadata).encode()})
                writer = pq.ParquetWriter(handle, schema)
            writer.write_table(chunk.replace_schema_metadata(writer.schema.metadata))
            done += len(part)
        if writer is None:  # no rows: still a readable file with the right columns
            dimension = EmbeddingModel(source).dimension
            empty = table.append_column("embedding", pa.array(
                [], pa.list_(pa.float32(), dimension)))
            pq.write_table(empty, handle)
        else:
            writer.close()

    atomic_write(config.out, write)
    return dimension


def _ingest(config: EmbedConfig, source: ModelSource, dimension: int,
            home: str | os.PathLike[str] | None) -> dict[str, Any]:
    from loopworks.featurestore import FeatureStore

    name = config.feature_group
    assert name is not None
    table = read_table(config.out, input_format="parquet").replace_schema_metadata(None)
    with FeatureStore(home=home) as store:
        group = store.get_or_create_feature_group(
            name, record_id=config.id_column, event_time=_date_name(config),
            df=table.slice(0, 1000),
            description=f"Sentence embeddings ({source.name}, {dimension} dimensions, "
                        "normalised) made by loopworks embed",
            tags={"source": "loopworks embed", "model": source.name},
            transformation={"model": source.name, "location": source.location,
                            "dimension": dimension, "normalized": True,
                            "text_column": config.text_column})
        result = group.ingest(table, workers=max(1, config.workers))
    return {"name": name, "rows": result.rows, "online_written": result.online_written,
            "offline_version": result.offline_version}
