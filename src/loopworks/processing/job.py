"""The processing job: raw reviews in, tokenized features per split out.

Stages:

1. **scan** (parallel, one task per input file): stream the file, derive sentiment and
   label ids, mark unusable rows with a reason, and write a staging Arrow file. Only the
   light keys (id, label, reason) go back to the driver.
2. **plan** (driver): duplicates, balancing and splits over all keys (:mod:`.plan`), so
   balancing happens *before* tokenizing and nothing is tokenized to be thrown away.
3. **encode** (parallel, one task per shard = row range of a staging file): tokenize the
   kept rows in batches and write one part file per split.
4. **finish**: write rejects and ``report.json``, then move the whole output into place,
   so a failed job never leaves output that looks complete.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from loopworks.errors import ConfigurationError, LoopworksError
from loopworks.files import (
    InputFile,
    discover_inputs,
    filesystem,
    is_local,
    iter_batches,
    local_path,
    read_table,
)
from loopworks.processing.config import ProcessingConfig
from loopworks.processing.engines import Engine
from loopworks.processing.plan import SPLIT_NAMES, make_plan
from loopworks.processing.report import FileJobStore, JobReport, JobStore, token_length_stats
from loopworks.processing.semantics import REJECT_REASONS, ColumnNames, normalize_batch
from loopworks.processing.tokenize import TextEncoder, load_tokenizer
from loopworks.processing.writers import extension_for, write_part

__all__ = ["check_processing_job", "new_job_report", "run_processing_job", "ProgressCallback"]

#: ``progress(stage, rows_done_now, rows_total)``; called from the driver only.
ProgressCallback = Callable[[str, int, int], None]
_ENCODE_BATCH = 2048


def _no_progress(stage: str, advance: int, total: int) -> None:
    return None


# --------------------------------------------------------------------------- scan stage
@dataclass(frozen=True)
class ScanTask:
    """Read one input file into a staging file."""

    index: int
    source: InputFile
    staging: str
    columns: ColumnNames
    event_time: datetime
    lab_compat: bool


@dataclass
class ScanResult:
    index: int
    staging: str
    rows: int
    keys: pa.Table
    seconds: float


def scan_file(task: ScanTask) -> ScanResult:
    """Stage 1 for one file: normalize every row, keep the keys for the driver."""
    start = time.perf_counter()
    rows = 0
    keys = []
    writer = None
    try:
        for raw in iter_batches(task.source):
            if raw.num_rows == 0:
                continue
            batch = normalize_batch(raw, columns=task.columns, source=task.source.relative,
                                    first_row=rows + 1, event_time=task.event_time,
                                    lab_compat=task.lab_compat)
            if writer is None:
                writer = ipc.new_file(task.staging, batch.schema)
            writer.write_batch(batch)
            keys.append(pa.table({name: batch.column(name)
                                  for name in ("review_id", "label_id", "reason")}))
            rows += raw.num_rows
    finally:
        if writer is not None:
            writer.close()
    key_table = pa.concat_tables(keys) if keys else pa.table({
        "review_id": pa.array([], pa.string()), "label_id": pa.array([], pa.int8()),
        "reason": pa.array([], pa.string())})
    return ScanResult(task.index, task.staging, rows, key_table, time.perf_counter() - start)


# ------------------------------------------------------------------------- encode stage
@dataclass(frozen=True)
class EncodeTask:
    """Tokenize the kept rows of one row range of a staging file and write its parts."""

    shard: int
    staging: str
    start: int
    stop: int
    split: np.ndarray  # int8 per row of the range: -1 skip, else split index
    review_ids: np.ndarray | None  # replacement ids (lab-compat) per row of the range
    tokenizer_json: str
    max_seq_length: int
    padding: bool
    truncation: bool
    special_tokens: bool
    out_dir: str
    output_format: str
    passthrough: tuple[str, ...]
    metadata: bytes


@dataclass
class EncodeResult:
    shard: int
    rows: dict[str, int]
    labels: dict[str, dict[int, int]]
    lengths: np.ndarray
    seconds: dict[str, float]
    files: list[str]


def encode_shard(task: EncodeTask) -> EncodeResult:
    """Stage 3 for one shard: read, tokenize in batches, write one part per split."""
    t0 = time.perf_counter()
    with pa.memory_map(task.staging) as source:
        table = ipc.open_file(source).read_all().slice(task.start, task.stop - task.start)
    keep = np.flatnonzero(task.split >= 0)
    table = table.take(pa.array(keep))
    split_codes = task.split[keep]
    if task.review_ids is not None:
        table = table.set_column(table.schema.get_field_index("review_id"), "review_id",
                                 pa.array(task.review_ids[keep], type=pa.string()))
    t1 = time.perf_counter()
    encoder = _encoder(task)
    texts = table.column("review_body").to_pylist()
    id_parts, mask_parts, lengths = [], [], []
    for begin in range(0, len(texts), _ENCODE_BATCH):
        encoded = encoder.encode(texts[begin : begin + _ENCODE_BATCH])
        id_parts.append(_to_arrow(encoded.input_ids, encoded.offsets))
        mask_parts.append(_to_arrow(encoded.attention_mask, encoded.offsets))
        lengths.append(encoded.lengths)
    t2 = time.perf_counter()
    list_type = (pa.list_(pa.int32(), task.max_seq_length)
                 if task.padding and task.truncation else pa.list_(pa.int32()))
    input_ids = pa.chunked_array(id_parts, type=list_type)
    attention = pa.chunked_array(mask_parts, type=list_type)
    split_names = pa.array(np.array(SPLIT_NAMES, dtype=object)[split_codes], type=pa.string())
    out = pa.table({
        "review_id": table.column("review_id"),
        "date": table.column("date"),
        "sentiment": table.column("sentiment"),
        "label_id": table.column("label_id"),
        "input_ids": input_ids,
        "attention_mask": attention,
        "review_body": table.column("review_body"),
        "split_type": split_names,
        **{name: table.column(name) for name in task.passthrough},
    }).replace_schema_metadata({b"loopworks": task.metadata})
    rows: dict[str, int] = {}
    labels: dict[str, dict[int, int]] = {}
    files: list[str] = []
    label_values = out.column("label_id").to_numpy()
    for code, name in enumerate(SPLIT_NAMES):
        selected = np.flatnonzero(split_codes == code)
        rows[name] = int(selected.size)
        labels[name] = {int(k): int(v) for k, v in
                        zip(*np.unique(label_values[selected], return_counts=True), strict=True)}
        if selected.size == 0:
            continue
        part = f"part-{task.shard:05d}{extension_for(task.output_format)}"
        path = Path(task.out_dir) / name / part
        write_part(out.take(pa.array(selected)), path, task.output_format)
        files.append(str(path.relative_to(task.out_dir)))
    t3 = time.perf_counter()
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    return EncodeResult(task.shard, rows, labels, all_lengths,
                        {"read": t1 - t0, "tokenize": t2 - t1, "write": t3 - t2}, files)


_ENCODERS: dict[tuple[object, ...], TextEncoder] = {}


def _encoder(task: EncodeTask) -> TextEncoder:
    """One encoder per worker process and tokenizer: building it costs ~0.2 s per shard."""
    key = (task.tokenizer_json, task.max_seq_length, task.padding, task.truncation,
           task.special_tokens)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = TextEncoder(task.tokenizer_json, task.max_seq_length,
                                     padding=task.padding, truncation=task.truncation,
                                     special_tokens=task.special_tokens)
    return _ENCODERS[key]


def _to_arrow(values: np.ndarray, offsets: np.ndarray | None) -> pa.Array:
    if offsets is None:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


# ------------------------------------------------------------------------------ driver
def run_processing_job(
    config: ProcessingConfig,
    *,
    home: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    job_id: str | None = None,
) -> JobReport:
    """Run a processing job and return its report (also saved under the home folder).

    Args:
        config: The job's options.
        home: loopworks home folder for the job record; ``None`` resolves settings.
        progress: Optional ``progress(stage, rows_done_now, rows_total)`` callback.
        job_id: Use this id instead of a generated one.

    Returns:
        The finished job's :class:`JobReport`.

    Raises:
        LoopworksError: Bad options or input. The job record says ``failed`` with the
            error, and no output folder is left looking complete.
    """
    from loopworks.settings import load_settings

    store = FileJobStore(load_settings(home=home).jobs_dir)
    report = new_job_report(config, job_id)
    store.save(report)
    progress = _recording(report, store, progress or _no_progress)
    work: Path | None = None
    try:
        files = check_processing_job(config)
        work = _work_dir(config.out, report.job_id)
        with Engine(config.engine, config.workers, config.ray_address) as engine:
            _run(config, files, report, work, progress, engine)
            if engine.nodes:
                report.counts["ray_nodes"] = len(engine.nodes)
        if config.feature_group:
            _ingest(config, report, load_settings(home=home).home, progress)
        report.status = "succeeded"
    except LoopworksError as exc:
        report.status, report.error = "failed", str(exc)
        raise
    except Exception as exc:
        report.status, report.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        report.finished_at = datetime.now(UTC).isoformat()
        store.save(report)
    return report


def new_job_report(config: ProcessingConfig, job_id: str | None = None) -> JobReport:
    """A new job's record (status ``running``, not yet saved): its id, inputs and options.

    Args:
        config: The job's options.
        job_id: Use this id instead of a generated ``process-<UTC time>-<4 hex digits>``.

    Returns:
        The record, created now.
    """
    started = datetime.now(UTC)
    return JobReport(job_id=job_id or f"process-{started:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}",
                     created_at=started.isoformat(), output=config.out,
                     output_format=config.output_format, engine=config.engine,
                     workers=config.workers, max_seq_length=config.max_seq_length,
                     inputs=[config.inputs] if isinstance(config.inputs, str)
                     else list(config.inputs),
                     options=_options(config))


def check_processing_job(config: ProcessingConfig) -> list[InputFile]:
    """What can be checked before any work: the inputs exist and the output can be written.

    A job runs these checks first; whoever queues a job for later (the Studio) runs them
    too, to refuse it at once with the same messages.

    Args:
        config: The job's options.

    Returns:
        The input files the job would read.

    Raises:
        InputError: An input matches no file, or its format cannot be told from its name.
        ConfigurationError: The output cannot be written or holds files loopworks did not
            write, or a feature group is asked for without a local Parquet output.
    """
    if config.feature_group and (not is_local(config.out)
                                 or config.output_format != "parquet"):
        raise ConfigurationError("--feature-group needs a local --out with --format parquet",
                                 setting="feature_group")
    _check_output_target(config)
    return discover_inputs(config.inputs, config.input_format)


def _recording(report: JobReport, store: JobStore,
               progress: ProgressCallback) -> ProgressCallback:
    """``progress``, and the rows done per stage kept in the job's record (saved at most
    once a second, so a page or `loopworks jobs describe` can follow a running job)."""
    saved = time.monotonic()

    def record(stage: str, advance: int, total: int) -> None:
        nonlocal saved
        done = report.progress.setdefault(stage, {"rows": 0, "total": 0})
        done["rows"] += advance
        done["total"] = total
        if time.monotonic() - saved >= 1.0:
            store.save(report)
            saved = time.monotonic()
        progress(stage, advance, total)

    return record


def _ingest(config: ProcessingConfig, report: JobReport, home: Path,
            progress: ProgressCallback) -> None:
    """Put the job's features into a feature group (created on first use)."""
    from loopworks.featurestore import FeatureStore

    clock = time.perf_counter()
    name = config.feature_group
    assert name is not None
    source = local_path(config.out)  # local Parquet: checked before the job
    splits = [read_table(str(source / split)) for split in SPLIT_NAMES
              if (source / split).is_dir()]
    if not splits:
        return
    table = pa.concat_tables(splits).replace_schema_metadata(None)
    with FeatureStore(home=home) as store:
        group = store.get_or_create_feature_group(
            name, record_id="review_id", event_time="date", df=table.slice(0, 1000),
            description="Product reviews: sentiment, label ids and token ids "
                        "(made by loopworks process)",
            tags={"source": "loopworks process"},
            transformation={"tokenizer": report.tokenizer,
                            "max_seq_length": config.max_seq_length, "job_id": report.job_id})
        result = group.ingest(table, workers=config.workers)
    progress("ingest", result.rows, result.rows)
    report.counts["feature_group"] = {"name": name, "rows": result.rows,
                                      "online_written": result.online_written,
                                      "offline_version": result.offline_version}
    report.timings["ingest"] = time.perf_counter() - clock


def _options(config: ProcessingConfig) -> dict[str, object]:
    return {
        "balance": config.balance, "split": list(config.split), "stratify": config.stratify,
        "seed": config.seed, "lab_compat": config.lab_compat, "padding": config.padding,
        "truncation": config.truncation, "special_tokens": config.special_tokens,
        "columns": asdict(config.columns), "shard_by": config.shard_by,
        "shard_rows": config.shard_rows,
        "event_time": config.event_time.isoformat() if config.event_time else None,
        "feature_group": config.feature_group,
    }


def _work_dir(out: str, job_id: str) -> Path:
    if is_local(out):
        target = local_path(out).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{job_id}-", dir=target.parent))
    return Path(tempfile.mkdtemp(prefix=f"loopworks-{job_id}-"))


def _run(config: ProcessingConfig, files: list[InputFile], report: JobReport, work: Path,
         progress: ProgressCallback, engine: Engine) -> None:
    timings = report.timings
    clock = time.perf_counter()
    loaded = load_tokenizer(config.tokenizer)
    tokenizer_json = loaded.tokenizer.to_str()
    report.tokenizer = {"name": loaded.name, "source": loaded.source, "sha256": loaded.sha256}
    TextEncoder(tokenizer_json, config.max_seq_length)  # fail fast on a bad length
    timings["prepare"] = time.perf_counter() - clock

    clock = time.perf_counter()
    staging = work / "_staging"
    staging.mkdir()
    assert config.event_time is not None
    scan_tasks = [ScanTask(i, f, str(staging / f"input-{i:05d}.arrow"), config.columns,
                           config.event_time, config.lab_compat) for i, f in enumerate(files)]
    scans: list[ScanResult] = []
    for result in engine.map(scan_file, scan_tasks):
        scans.append(result)
        progress("read", result.rows, 0)
    scans.sort(key=lambda r: r.index)
    timings["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    keys = pa.concat_tables([s.keys for s in scans])
    plan = make_plan(keys, split=config.split, seed=config.seed, balance=config.balance,
                     stratify=config.stratify, lab_compat=config.lab_compat)
    timings["plan"] = time.perf_counter() - clock

    clock = time.perf_counter()
    metadata = json.dumps({"tokenizer": report.tokenizer,
                           "max_seq_length": config.max_seq_length, "job_id": report.job_id,
                           "padding": config.padding, "truncation": config.truncation,
                           "special_tokens": config.special_tokens}).encode()
    encode_tasks: list[EncodeTask] = []
    offset = 0
    for scan in scans:
        step = scan.rows if config.shard_by == "file" else config.shard_rows
        for start in range(0, scan.rows, max(step, 1)):
            stop = min(start + step, scan.rows)
            split = plan.split[offset + start : offset + stop]
            if (split >= 0).any():
                ids = None if plan.review_id is None else \
                    plan.review_id[offset + start : offset + stop]
                encode_tasks.append(EncodeTask(
                    len(encode_tasks), scan.staging, start, stop, split, ids, tokenizer_json,
                    config.max_seq_length, config.padding, config.truncation,
                    config.special_tokens, str(work), config.output_format,
                    config.columns.passthrough, metadata))
        offset += scan.rows
    total = int((plan.split >= 0).sum())
    results: list[EncodeResult] = []
    for encoded in engine.map(encode_shard, encode_tasks):
        results.append(encoded)
        progress("encode", sum(encoded.rows.values()), total)
    results.sort(key=lambda r: r.shard)
    timings["encode"] = time.perf_counter() - clock
    for stage in ("read", "tokenize", "write"):
        timings[f"encode.{stage}_worker_seconds"] = round(
            sum(r.seconds[stage] for r in results), 4)

    clock = time.perf_counter()
    rejects_file = _write_rejects(scans, plan.reason, files, work, config.output_format)
    shutil.rmtree(staging)
    lengths = np.concatenate([r.lengths for r in results]) if results else np.zeros(0)
    report.tokens = token_length_stats(lengths, config.max_seq_length)
    report.counts = _counts(keys, plan, results, rows_in=sum(s.rows for s in scans))
    report.files = sorted(f for r in results for f in r.files) + [rejects_file, "report.json"]
    elapsed = time.perf_counter() - clock
    timings["finish"] = elapsed
    timings["total"] = sum(v for k, v in timings.items() if "." not in k)
    report.counts["rows_per_second"] = round(report.counts["rows_in"] / timings["total"], 1) \
        if timings["total"] else 0.0
    report.status = "succeeded"
    report.finished_at = datetime.now(UTC).isoformat()
    (work / "report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    _move_into_place(work, config.out, config.overwrite)


def _counts(keys: pa.Table, plan, results: list[EncodeResult], rows_in: int) -> dict:
    reasons = {r: int((plan.reason == r).sum()) for r in REJECT_REASONS}
    labels_before = keys.filter(pc.is_null(keys.column("reason"))).column("label_id")
    by_split = {name: sum(r.rows[name] for r in results) for name in SPLIT_NAMES}
    labels_out: dict[str, dict[str, int]] = {}
    for name in SPLIT_NAMES:
        merged: dict[str, int] = {}
        for r in results:
            for label, count in r.labels[name].items():
                merged[str(label)] = merged.get(str(label), 0) + count
        labels_out[name] = dict(sorted(merged.items()))
    before = {str(k): int(v) for k, v in
              zip(*np.unique(labels_before.to_numpy(zero_copy_only=False), return_counts=True),
                  strict=True)}
    return {
        "rows_in": rows_in,
        "rows_rejected": sum(reasons.values()),
        "rejected_by_reason": {k: v for k, v in reasons.items() if v},
        "rows_usable": int(rows_in - sum(reasons.values())),
        "label_counts_usable": before,
        "rows_dropped_by_balancing": int(plan.balanced_out.sum()),
        "rows_out": sum(by_split.values()),
        "rows_by_split": by_split,
        "label_counts_by_split": labels_out,
    }


def _write_rejects(scans: list[ScanResult], reasons: np.ndarray, files: list[InputFile],
                   work: Path, fmt: str) -> str:
    parts = []
    offset = 0
    for scan in scans:
        local = reasons[offset : offset + scan.rows]
        rows = np.flatnonzero(~pd.isna(local))
        offset += scan.rows
        if rows.size == 0:
            continue
        with pa.memory_map(scan.staging) as source:
            staged = ipc.open_file(source).read_all().take(pa.array(rows))
        parts.append(pa.table({
            "source_file": pa.array([files[scan.index].url] * rows.size, pa.string()),
            "row": staged.column("_row"),
            "review_id": staged.column("review_id"),
            "reason": pa.array(local[rows].astype(str), pa.string()),
            "rating": staged.column("rating_raw"),
            "review_body": staged.column("review_body"),
        }))
    schema = pa.schema([("source_file", pa.string()), ("row", pa.int64()),
                        ("review_id", pa.string()), ("reason", pa.string()),
                        ("rating", pa.string()), ("review_body", pa.string())])
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    name = "rejects.parquet" if fmt == "parquet" else "rejects.jsonl"
    write_part(table, work / name, "parquet" if fmt == "parquet" else "jsonl")
    return name


def _check_output_target(config: ProcessingConfig) -> None:
    if not is_local(config.out):
        return
    target = local_path(config.out)
    if target.exists() and not target.is_dir():
        raise ConfigurationError(f"--out {target} exists and is not a folder", setting="out")
    if target.is_dir() and any(target.iterdir()) and not (target / "report.json").is_file() \
            and not config.overwrite:
        raise ConfigurationError(
            f"--out {target} is not empty and was not written by loopworks; choose another "
            "folder or pass --overwrite to replace it",
            setting="out",
        )
    # The job writes next to the output (then renames): the nearest folder that exists on
    # the way there must take new files.
    parent = target.resolve().parent
    folder = next(p for p in (parent, *parent.parents) if p.exists())
    if not folder.is_dir():
        raise ConfigurationError(f"--out {target} cannot be created: {folder} is a file, not a "
                                 "folder", setting="out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigurationError(f"--out {target} cannot be written: no permission to create "
                                 f"files in {folder}", setting="out")


def _move_into_place(work: Path, out: str, overwrite: bool) -> None:
    """Swap the finished folder in; the previous output is removed only after that."""
    if not is_local(out):
        fs, path = filesystem(out)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        for file in sorted(work.rglob("*"), key=lambda p: p.name == "report.json"):
            if file.is_file():  # report.json last: its presence marks a complete output
                fs.put_file(str(file), f"{path}/{file.relative_to(work).as_posix()}")
        return
    target = local_path(out).resolve()
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        os.replace(target, old)
    os.replace(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
