"""Batch prediction over files: every input column kept, prediction columns added.

Input is read as a stream of record batches (CSV, JSON Lines or Parquet; a file, folder or
glob), each batch is predicted in one vectorised call and appended to the output, so memory
stays flat for big files. The output goes to a temporary file beside the target and is
renamed into place at the end: a failed run leaves no partial output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from loopworks.errors import ConfigurationError, InputError
from loopworks.models.data import find_text_column, input_files
from loopworks.models.predictions import prediction_columns
from loopworks.models.predictor import ProbabilityPredictor, as_predictor

if TYPE_CHECKING:
    from loopworks.files import InputFile

__all__ = ["OUTPUT_FORMATS", "PredictionReport", "predict_file"]

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                  ".json": "jsonl", ".ndjson": "jsonl"}
ON_EMPTY = ("error", "skip")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PredictionReport:
    """What a batch prediction did.

    Attributes:
        out: The output file.
        rows: Rows written (all input rows).
        predicted: Rows that got a prediction.
        empty: Rows with empty text (left without a prediction when skipped).
        by_label: Predicted rows per class name.
        mean_confidence: Mean confidence over predicted rows.
        model: The predictor's name (``name:version`` for a saved model).
        seconds: Wall time.
    """

    out: Path
    rows: int
    predicted: int
    empty: int
    by_label: dict[str, int]
    mean_confidence: float
    model: str
    seconds: float


def output_format(out: str | Path) -> str:
    """The output format from the file suffix.

    Raises:
        ConfigurationError: The suffix is not .parquet, .csv or .jsonl.
    """
    fmt = OUTPUT_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise ConfigurationError(f"cannot tell the output format of {str(out)!r}; end it in "
                                 ".parquet, .csv or .jsonl", file=str(out))
    return fmt


def predict_file(model: Any, input: str | Path, out: str | Path, *,
                 text_column: str | None = None, on_empty: str = "error",
                 progress: Progress | None = None, batch_rows: int = 8192,
                 home: str | None = None) -> PredictionReport:
    """Predict every row of a file and write the rows with prediction columns added.

    Added columns: ``prediction`` (class name), ``confidence`` (calibrated top
    probability) and ``prob_<class>`` for each class. For Parquet output the schema
    metadata ``loopworks.predictions`` records the model and its classes.

    Args:
        model: A model name (``name`` or ``name:version``), a loaded model, or anything
            :func:`~loopworks.models.predictor.as_predictor` accepts.
        input: CSV, JSON Lines or Parquet file, folder or glob (a processing job's output
            folder: its train, validation and test parts).
        out: Output file; its suffix (.parquet, .csv, .jsonl) picks the format.
        text_column: Column with the text (default: the first of review_body, review_text,
            text, ... present).
        on_empty: ``error`` (default): rows with empty text fail the run, naming them;
            ``skip``: they are kept with empty prediction columns.
        progress: Called as ``progress("predict", rows_done_now, total_rows_or_0)``.
        batch_rows: Rows predicted per call.
        home: loopworks home folder, when ``model`` is a name.

    Returns:
        The :class:`PredictionReport`.

    Raises:
        ConfigurationError: Bad output suffix or ``on_empty`` value, or the input columns
            clash with the prediction columns.
        InputError: Missing input, missing text column (naming the file and column), or
            empty text rows with ``on_empty="error"`` (naming the rows).
    """
    from loopworks.files import atomic_write

    if on_empty not in ON_EMPTY:
        raise ConfigurationError(f"on_empty must be one of {', '.join(ON_EMPTY)}, not "
                                 f"{on_empty!r}", valid_values=ON_EMPTY)
    fmt = output_format(out)
    predictor = as_predictor(model, home=home)
    files = input_files(input)
    total = _count_rows(files)
    report_progress = progress or (lambda stage, done, total: None)
    started = time.perf_counter()
    out = Path(out)
    state = _State(len(predictor.classes))

    def write(fh: IO[bytes]) -> None:
        writer = _Writer(fmt, fh, predictor)
        try:
            for source in files:
                _predict_file(source, writer, state, predictor, text_column,
                              skip_empty=on_empty == "skip", batch_rows=batch_rows,
                              progress=report_progress, total=total)
        finally:
            writer.close()
        _check_rows(state, input, on_empty)

    atomic_write(out, write)  # a failed run leaves no output and no temporary file
    return PredictionReport(
        out=out, rows=state.rows, predicted=state.predicted, empty=state.empty,
        by_label=dict(zip(predictor.classes, (int(n) for n in state.by_label), strict=True)),
        mean_confidence=state.confidence_sum / state.predicted if state.predicted else 0.0,
        model=predictor.name, seconds=time.perf_counter() - started)


def _predict_file(source: InputFile, writer: _Writer, state: _State,
                  predictor: ProbabilityPredictor, text_column: str | None, *, skip_empty: bool,
                  batch_rows: int, progress: Progress, total: int) -> None:
    from loopworks.files import iter_batches

    column: str | None = None
    for batch in _rebatch(iter_batches(source), batch_rows):
        if column is None:
            column = find_text_column(batch.schema.names, text_column, source.url)
            state.column = column
            clash = set(batch.schema.names) & set(prediction_columns(predictor.classes))
            if clash:
                raise ConfigurationError(
                    f"{source.url}: already has column(s) {', '.join(sorted(clash))}; "
                    "rename them before predicting", file=source.url)
        _predict_batch(batch, column, predictor, writer, state, source.url,
                       skip_empty=skip_empty)
        progress("predict", batch.num_rows, total)


def _check_rows(state: _State, input: str | Path, on_empty: str) -> None:
    """Fail a run with no rows, or with empty text unless asked to skip it."""
    if state.rows == 0:
        raise InputError(f"{input}: holds no rows to predict", file=str(input))
    if state.empty and on_empty == "error":
        first_file, rows = next(iter(state.empty_rows.items()))
        shown = ", ".join(str(r) for r in rows[:10])
        others = len(state.empty_rows) - 1
        raise InputError(
            f"{first_file}: {state.empty} row(s) have empty text in column "
            f"{state.column!r}: rows {shown}"
            + (" and more" if state.empty > len(rows[:10]) else "")
            + (f" (also in {others} other file(s))" if others else "")
            + " (data rows counted from 0); fill or remove them, or keep them without a "
            "prediction with --on-empty skip", file=first_file,
            rows=rows[:10], column=state.column)


class _State:
    def __init__(self, k: int) -> None:
        self.rows = 0
        self.predicted = 0
        self.empty = 0
        self.by_label = np.zeros(k, dtype=np.int64)
        self.confidence_sum = 0.0
        self.file_rows: dict[str, int] = {}
        #: Empty-text rows per file (the first few: enough to name them in the error).
        self.empty_rows: dict[str, list[int]] = {}
        self.column = ""


def _predict_batch(batch: pa.RecordBatch, column: str, predictor: ProbabilityPredictor,
                   writer: _Writer, state: _State, source: str, skip_empty: bool) -> None:
    import pyarrow.compute as pc

    texts = batch.column(column)
    if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
        texts = pc.cast(texts, pa.string())
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(texts), ""), True)
    empty = np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)
    offset = state.file_rows.get(source, 0)
    state.file_rows[source] = offset + batch.num_rows
    state.rows += batch.num_rows
    if empty.any():
        state.empty += int(empty.sum())
        named = state.empty_rows.setdefault(source, [])
        named.extend((np.flatnonzero(empty)[: 10 - len(named)] + offset).tolist())
    if state.empty and not skip_empty:
        return  # keep scanning to count every empty row; nothing more is written
    keep = np.flatnonzero(~empty)
    k = len(predictor.classes)
    probs = np.full((batch.num_rows, k), np.nan)
    if keep.size:
        chosen = pc.take(texts, pa.array(keep)).to_pylist()
        probs[keep] = predictor.predict_proba(chosen)
    ids = np.where(empty, 0, np.nan_to_num(probs).argmax(axis=1))
    labels = np.asarray(predictor.classes, dtype=object)[ids]
    conf = np.nan_to_num(probs).max(axis=1)
    predicted = ~empty
    state.predicted += int(predicted.sum())
    state.by_label += np.bincount(ids[predicted], minlength=k)
    state.confidence_sum += float(conf[predicted].sum())
    arrays: list[pa.Array] = [pa.array(labels, pa.string(), mask=empty),
                              pa.array(conf, pa.float64(), mask=empty)]
    arrays += [pa.array(probs[:, i], pa.float64(), mask=empty) for i in range(k)]
    columns = list(batch.columns) + arrays
    names = list(batch.schema.names) + prediction_columns(predictor.classes)
    writer.write(pa.RecordBatch.from_arrays(columns, names=names))


def _rebatch(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _count_rows(files: list[InputFile]) -> int:
    """Total rows when cheap to know (Parquet metadata), else 0 (unknown)."""
    import fsspec
    import pyarrow.parquet as pq

    total = 0
    for source in files:
        if source.format != "parquet":
            return 0
        with fsspec.open(source.url, "rb") as fh:
            total += pq.ParquetFile(fh).metadata.num_rows
    return total


def _flatten_lists(data: Any) -> Any:
    """CSV has no lists: write list columns (token ids) as ``[1,2,3]`` text, vectorised."""
    import pyarrow.compute as pc

    columns, changed = [], False
    for column in data.columns:
        kind = column.type
        if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or \
                pa.types.is_large_list(kind):
            as_text = pc.cast(column, pa.list_(pa.string()))
            joined = pc.binary_join(as_text, ",")
            column = pc.binary_join_element_wise("[", joined, "]", "")
            changed = True
        columns.append(column)
    if not changed:
        return data
    return type(data).from_arrays(columns, names=data.schema.names)


class _Writer:
    """Appends record batches to a Parquet, CSV or JSON Lines file (open for writing)."""

    def __init__(self, fmt: str, fh: IO[bytes], predictor: ProbabilityPredictor) -> None:
        self.fmt = fmt
        self.fh = fh
        self.meta = json.dumps({"model": predictor.name, "classes": list(predictor.classes),
                                "columns": prediction_columns(predictor.classes)})
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._schema is None:
            self._open(batch.schema)
        assert self._schema is not None
        if batch.schema != self._schema:
            try:
                batch = pa.Table.from_batches([batch]).cast(self._schema).to_batches()[0]
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                    IndexError) as exc:
                raise InputError(f"the input's columns change type part-way through "
                                 f"({exc}); convert it to Parquet first") from None
        if self.fmt == "csv":
            self._writer.write_batch(_flatten_lists(batch))
        elif self.fmt == "jsonl":
            text = batch.to_pandas().to_json(orient="records", lines=True, force_ascii=False,
                                             date_format="iso")
            self.fh.write(text.encode("utf-8"))
        else:
            self._writer.write_batch(batch)

    def _open(self, schema: pa.Schema) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self.fmt == "parquet":
            schema = schema.with_metadata({**(schema.metadata or {}),
                                           b"loopworks.predictions": self.meta.encode()})
            self._writer = pq.ParquetWriter(self.fh, schema)
        elif self.fmt == "csv":
            self._writer = pacsv.CSVWriter(self.fh, _flatten_lists(schema.empty_table()).schema)
        self._schema = schema

    def close(self) -> None:
        """Finish the file (Parquet's footer); the file itself stays open."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
