"""Human loops for a whole file of model predictions (``loopworks review run``).

A predictions file (CSV, JSON Lines or Parquet; a file, folder or glob, local or an fsspec
URL) holds a text column and one ``prob_<class>`` column per class of the flow, as
``loopworks predict`` writes them. Every row becomes one input content::

    {"text": ..., "probabilities": {class: p, ...}, <id column and other scalar columns>}

and is offered to :meth:`HumanReview.start_human_loops` in batches, so the activation
conditions are evaluated on a whole batch at once and the loops that start are written in
one transaction per batch.

Loop names are stable, so running the same file again is idempotent: each row's name is the
prefix plus its id column's value (lower-cased, runs of other characters turned into ``-``;
when that changes the value, or it is too long, 8 hex digits of its SHA-256 are appended so
that distinct ids keep distinct names), or, with no id column, the prefix plus a hash of the
row's content.

The whole file is read and checked before any loop starts: a missing column, an
unparseable or non-normalised probability, an empty text or a repeated id with other
content fails the run with the file, column and rows named, and nothing is started.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.errors import ConflictError, InputError
from loopworks.review.flows import HumanReview

__all__ = ["BatchReport", "PredictionInputs", "TEXT_COLUMNS", "ID_COLUMNS", "loop_name",
           "read_prediction_inputs", "start_from_predictions"]

#: Tried in order when no text column is given.
TEXT_COLUMNS = ("review_body", "review_text", "text", "Review Text", "content", "body", "source")
#: Tried in order when no id column is given (else names come from a content hash).
ID_COLUMNS = ("review_id", "id")
#: Keys of the input content that other columns may not take over.
_RESERVED = {"text", "source", "taskObject", "probabilities"}
_MAX_NAME = 63
_SUM_TOLERANCE = 1e-3

Progress = Callable[[str, int, int], None]


@dataclass
class BatchReport:
    """What a batch run did.

    Attributes:
        source: The predictions file as given.
        rows: Rows read.
        evaluated: Distinct predictions whose conditions were evaluated (or whose loop
            already existed).
        duplicates: Rows repeating an earlier row exactly (same name, same content).
        started: Loops started by this run.
        existing: Loops that already existed (a repeated run).
        not_activated: Predictions no activation condition held for.
        fired: How often each condition fired, over the loops started or found.
        naming: How loop names were made (``id column 'x'`` or ``content hash``).
        seconds: Wall time, reading included.
    """

    source: str
    rows: int = 0
    evaluated: int = 0
    duplicates: int = 0
    started: int = 0
    existing: int = 0
    not_activated: int = 0
    fired: dict[str, int] = field(default_factory=dict)
    naming: str = ""
    seconds: float = 0.0

    @property
    def sent_to_people(self) -> int:
        """Predictions that have a loop: started now or before."""
        return self.started + self.existing

    @property
    def human_share(self) -> float | None:
        """Share of the evaluated predictions that went to people."""
        return self.sent_to_people / self.evaluated if self.evaluated else None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {"source": self.source, "rows": self.rows, "evaluated": self.evaluated,
                "duplicates": self.duplicates, "sent_to_people": self.sent_to_people,
                "human_share": self.human_share, "started": self.started,
                "existing": self.existing, "not_activated": self.not_activated,
                "fired": self.fired, "naming": self.naming,
                "seconds": round(self.seconds, 3)}


@dataclass
class PredictionInputs:
    """The (name, input content) pairs of a predictions file, ready to start."""

    inputs: list[tuple[str, dict[str, Any]]]
    rows: int
    duplicates: int
    naming: str


def loop_name(prefix: str, value: str) -> str:
    """A valid human-loop name for ``prefix + value`` (see the module's naming rule)."""
    raw = f"{prefix}{value}"
    clean = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if clean == raw and len(clean) <= _MAX_NAME:
        return clean
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    head = clean[:_MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}" if head else digest


def _content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _rows(mask: np.ndarray) -> str:
    where = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in where[:10])
    return shown + (f" and {where.size - 10} more" if where.size > 10 else "")


def _read(source: str) -> pa.Table:
    from loopworks.files import read_table

    table = read_table(source)
    if table.num_rows == 0:
        raise InputError(f"{source}: holds no rows", file=source)
    return table


def _pick(columns: Sequence[str], given: str | None, candidates: Sequence[str], source: str,
          role: str) -> str | None:
    if given is not None:
        if given not in columns:
            raise InputError(f"{source}: no {role} column {given!r}; its columns are: "
                             f"{', '.join(columns)}", file=source, column=given)
        return given
    return next((c for c in candidates if c in columns), None)


def _scalar_columns(table: pa.Table, skip: set[str]) -> list[dict[str, Any]]:
    """The other columns as JSON-friendly scalars: dates and times as ISO-like strings,
    NaN as null; lists, structs and binaries are left out."""
    keep: dict[str, pa.ChunkedArray] = {}
    for name in table.column_names:
        if name in skip or name in _RESERVED:
            continue
        column = table.column(name)
        kind = column.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) \
                or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            continue
        if pa.types.is_temporal(kind) or pa.types.is_decimal(kind) \
                or pa.types.is_dictionary(kind):
            column = pc.cast(column, pa.string()) if not pa.types.is_decimal(kind) \
                else pc.cast(column, pa.float64())
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        keep[name] = column
    if not keep:
        return [{} for _ in range(table.num_rows)]
    return pa.table(keep).to_pylist()


def read_prediction_inputs(source: str, labels: Sequence[str], *,
                           text_column: str | None = None, id_column: str | None = None,
                           name_prefix: str = "") -> PredictionInputs:
    """Read and check a predictions file; return its (loop name, input content) pairs.

    Args:
        source: CSV, JSON Lines or Parquet file, folder or glob.
        labels: The flow's classes; the file needs ``prob_<class>`` for each.
        text_column: Column with the text (default: the first of :data:`TEXT_COLUMNS`).
        id_column: Column identifying each prediction (default: the first of
            :data:`ID_COLUMNS` present; with none, names come from a content hash).
        name_prefix: Put before every loop name.

    Returns:
        The inputs, with how many rows were read and how many repeated an earlier row.

    Raises:
        InputError: The file is missing or malformed, a column is missing, or rows have an
            empty text, a missing id, bad probabilities or a repeated id with other content
            (naming the file, column and rows, counted from 0).
    """
    table = _read(source)
    columns = table.column_names
    text = _pick(columns, text_column, TEXT_COLUMNS, source, "text")
    if text is None:
        raise InputError(f"{source}: no text column found (looked for "
                         f"{', '.join(TEXT_COLUMNS)}); its columns are: {', '.join(columns)}; "
                         "pass --text-column", file=source, column=None)
    prob_columns = [f"prob_{c}" for c in labels]
    missing = [c for c in prob_columns if c not in columns]
    if missing:
        raise InputError(
            f"{source}: no column {', '.join(repr(m) for m in missing)}; a predictions file "
            f"needs prob_<class> for each of the flow's classes ({', '.join(labels)}), as "
            f"`loopworks predict` writes them; its columns are: {', '.join(columns)}",
            file=source, column=missing[0])
    ident = _pick(columns, id_column, ID_COLUMNS, source, "id")

    texts = table.column(text).to_pylist()
    empty = np.array([not isinstance(t, str) or not t.strip() for t in texts], dtype=bool)
    if empty.any():
        raise InputError(f"{source}: {int(empty.sum())} row(s) have no text in column "
                         f"{text!r}: rows {_rows(empty)} (data rows counted from 0)",
                         file=source, column=text, rows=np.flatnonzero(empty)[:10].tolist())
    probs = np.empty((table.num_rows, len(labels)), dtype=np.float64)
    for j, name in enumerate(prob_columns):
        try:
            column = pc.cast(table.column(name), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InputError(f"{source}: column {name!r} holds values that are not numbers "
                             f"({exc})", file=source, column=name) from None
        probs[:, j] = column.to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(probs).all(axis=1)
    bad |= (probs < 0).any(axis=1) | (np.abs(np.nan_to_num(probs).sum(axis=1) - 1)
                                       > _SUM_TOLERANCE)
    if bad.any():
        raise InputError(
            f"{source}: {int(bad.sum())} row(s) have probabilities ({', '.join(prob_columns)}) "
            f"that are missing, negative or do not sum to 1: rows {_rows(bad)} (data rows "
            "counted from 0)", file=source, column=prob_columns[0],
            rows=np.flatnonzero(bad)[:10].tolist())
    ids: list[Any] | None = None
    if ident is not None:
        ids = table.column(ident).to_pylist()
        absent = np.array([v is None or str(v).strip() == "" for v in ids], dtype=bool)
        if absent.any():
            raise InputError(f"{source}: {int(absent.sum())} row(s) have no id in column "
                             f"{ident!r}: rows {_rows(absent)} (data rows counted from 0)",
                             file=source, column=ident, rows=np.flatnonzero(absent)[:10].tolist())
    others = _scalar_columns(table, set(prob_columns) | {text})

    inputs: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, tuple[int, str]] = {}
    duplicates = 0
    plist = probs.tolist()
    for i, (row_text, row_probs, extra) in enumerate(zip(texts, plist, others, strict=True)):
        content = {**extra, "text": row_text,
                   "probabilities": dict(zip(labels, row_probs, strict=True))}
        digest = _content_hash(content)
        name = loop_name(name_prefix, str(ids[i])) if ids is not None \
            else loop_name(name_prefix, digest[:24])
        earlier = seen.get(name)
        if earlier is not None:
            if earlier[1] == digest:
                duplicates += 1
                continue
            what = f"id {ids[i]!r} in column {ident!r}" if ids is not None \
                else f"loop name {name!r}"
            raise InputError(f"{source}: {what} appears in rows {earlier[0]} and {i} with "
                             "different content; ids must identify one prediction",
                             file=source, column=ident, rows=[earlier[0], i])
        seen[name] = (i, digest)
        inputs.append((name, content))
    naming = f"id column {ident!r}" if ident is not None else "content hash"
    return PredictionInputs(inputs, table.num_rows, duplicates, naming)


def start_from_predictions(review: HumanReview, flow: str, source: str, *,
                           text_column: str | None = None, id_column: str | None = None,
                           name_prefix: str = "", batch_size: int = 1000,
                           progress: Progress | None = None) -> BatchReport:
    """Start human loops for every prediction in a file that meets the flow's conditions.

    Args:
        review: The human-review domain object.
        flow: The flow definition's name.
        source: The predictions file (see :func:`read_prediction_inputs`).
        text_column: Column with the text.
        id_column: Column identifying each prediction.
        name_prefix: Put before every loop name.
        batch_size: Predictions per :meth:`HumanReview.start_human_loops` call.
        progress: Called as ``progress("human loops", done_now, total)``.

    Returns:
        The :class:`BatchReport`.

    Raises:
        NotFoundError: No such flow.
        InputError: The file does not hold usable predictions (see
            :func:`read_prediction_inputs`).
        ConflictError: A loop of that name exists with other content (the predictions
            changed since an earlier run: use another name prefix).
    """
    started_at = time.perf_counter()
    spec = review.flow(flow)
    read = read_prediction_inputs(source, spec.labels, text_column=text_column,
                                  id_column=id_column, name_prefix=name_prefix)
    report = BatchReport(source, rows=read.rows, duplicates=read.duplicates,
                         naming=read.naming)
    fired: Counter[str] = Counter()
    total = len(read.inputs)
    step = max(1, batch_size)
    for lo in range(0, total, step):
        chunk = read.inputs[lo:lo + step]
        try:
            results = review.start_human_loops(flow, chunk)
        except ConflictError as exc:
            raise ConflictError(
                f"{exc}; were the predictions in {source} made again since an earlier run? "
                f"Start them under another --name-prefix ({report.started:,} loops were "
                "started by this run before this)", **exc.fields) from None
        for result in results:
            if result.reason == "exists":
                report.existing += 1
            elif result.started:
                report.started += 1
            else:
                report.not_activated += 1
            fired.update(result.conditions_fired)
        report.evaluated += len(chunk)
        if progress is not None:
            progress("human loops", len(chunk), total)
    report.fired = dict(fired.most_common())
    report.seconds = time.perf_counter() - started_at
    return report
