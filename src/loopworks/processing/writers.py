"""Writing feature tables as Parquet, JSON Lines or TFRecord part files.

Token ids stay typed arrays: ``fixed_size_list<int32>[max_seq_length]`` in Parquet, JSON
arrays in JSON Lines, int64 lists in ``tf.train.Example`` records (the layout TensorFlow's
BERT input pipelines read: input_ids, input_mask, segment_ids, label_ids). TFRecord goes
through the maintained ``tfrecord`` package, without TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loopworks.errors import ConfigurationError
from loopworks.files import read_table

__all__ = ["OUTPUT_FORMATS", "write_part", "read_output", "extension_for"]

OUTPUT_FORMATS = ("parquet", "jsonl", "tfrecord")
_EXT = {"parquet": ".parquet", "jsonl": ".jsonl", "tfrecord": ".tfrecord"}


def extension_for(fmt: str) -> str:
    """File extension of an output format."""
    if fmt not in _EXT:
        raise ConfigurationError(
            f"unknown output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}",
            setting="format", valid_values=list(OUTPUT_FORMATS),
        )
    return _EXT[fmt]


def write_part(table: pa.Table, path: Path, fmt: str) -> None:
    """Write one part file (the caller writes into a temporary folder, then moves it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "jsonl":
        _write_jsonl(table, path)
    elif fmt == "tfrecord":
        _write_tfrecord(table, path)
    else:
        extension_for(fmt)


def _write_jsonl(table: pa.Table, path: Path) -> None:
    frame = table.to_pandas()
    with path.open("w", encoding="utf-8") as fh:
        if len(frame):
            frame.to_json(fh, orient="records", lines=True, date_format="iso",
                          date_unit="s", force_ascii=False)


def _write_tfrecord(table: pa.Table, path: Path) -> None:
    from tfrecord import TFRecordWriter

    n = table.num_rows
    ids = _matrix(table.column("input_ids"))
    mask = _matrix(table.column("attention_mask"))
    labels = table.column("label_id").to_numpy().astype(np.int64)
    segments = [0] * (ids.shape[1] if ids.ndim == 2 else 0)
    writer = TFRecordWriter(str(path))
    try:
        # tf.train.Example is one protobuf message per record: the format is row by row.
        for i in range(n):
            writer.write({
                "input_ids": (ids[i].tolist(), "int"),
                "input_mask": (mask[i].tolist(), "int"),
                "segment_ids": (segments, "int"),
                "label_ids": ([int(labels[i])], "int"),
            })
    finally:
        writer.close()


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    arr = column.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        return arr.values.to_numpy().reshape(len(arr), arr.type.list_size)
    raise ConfigurationError("TFRecord output needs padded token ids (drop --no-padding)",
                             setting="format")


def read_output(folder: str | Path, fmt: str = "parquet") -> pa.Table:
    """Read every part file of one split folder back into one table (for tests and users)."""
    folder = Path(folder)
    parts = sorted(folder.glob(f"*{extension_for(fmt)}"))
    if fmt == "parquet":
        return read_table([str(p) for p in parts]) if parts else pa.table({})
    if fmt == "jsonl":
        rows = [json.loads(line) for p in parts for line in p.read_text("utf-8").splitlines()]
        return pa.Table.from_pylist(rows)
    from tfrecord.reader import tfrecord_loader

    records = [
        {k: np.asarray(v).tolist() for k, v in rec.items()}
        for p in parts for rec in tfrecord_loader(str(p), None)
    ]
    return pa.Table.from_pylist(records)
