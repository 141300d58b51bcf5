"""Finding input files and reading them as a stream of Arrow record batches.

Inputs are CSV, JSON Lines or Parquet: one file, a folder (every supported file below it)
or a glob, on local disk or any fsspec URL (``s3://...``). Reading streams in blocks so that
memory stays flat however large a file is. A malformed file fails with an
:class:`~loopworks.errors.InputError` naming the file and the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from loopworks.errors import InputError

__all__ = ["InputFile", "discover_inputs", "iter_batches", "FORMATS"]

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_BLOCK_BYTES = 8 << 20


@dataclass(frozen=True)
class InputFile:
    """One input file: its URL, format and name relative to the input root (for stable ids)."""

    url: str
    format: str
    relative: str


def _format_of(path: str) -> str | None:
    lower = path.lower()
    for ext, fmt in FORMATS.items():
        if lower.endswith(ext):
            return fmt
    return None


def discover_inputs(spec: str | list[str], input_format: str | None = None) -> list[InputFile]:
    """Expand a file, folder or glob (local path or fsspec URL) into sorted input files.

    Args:
        spec: A path, folder, glob or URL, or several of them.
        input_format: Force ``csv``, ``jsonl`` or ``parquet`` instead of guessing by extension.

    Returns:
        The input files in a stable order (sorted by path).

    Raises:
        InputError: Nothing matches, or a file's format cannot be told from its name.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    found: list[InputFile] = []
    for item in specs:
        fs, _, paths = fsspec.get_fs_token_paths(item)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        candidates: list[tuple[str, str]] = []
        if not paths:
            raise InputError(f"input {item!r} matches no file", file=item)
        for path in paths:
            if fs.isdir(path):
                for sub in sorted(fs.find(path)):
                    if _format_of(sub) or input_format:
                        candidates.append((sub, sub[len(path.rstrip("/")) + 1 :]))
            elif fs.exists(path):
                name = path.rsplit("/", 1)[-1]
                rel = name if len(paths) == 1 else path
                candidates.append((path, rel))
            else:
                raise InputError(f"input file {item!r} does not exist", file=item)
        if not candidates:
            raise InputError(
                f"input {item!r} holds no CSV, JSON Lines or Parquet file", file=item
            )
        for path, rel in candidates:
            fmt = input_format or _format_of(path)
            if fmt is None:
                raise InputError(
                    f"{path}: cannot tell the format from the file name; use a .csv, .jsonl or "
                    ".parquet name or pass --input-format",
                    file=path,
                )
            found.append(InputFile(url=prefix + path, format=fmt, relative=rel))
    urls = [f.url for f in found]
    if len(set(urls)) != len(urls):
        raise InputError("the same input file is named twice", file=urls)
    return sorted(found, key=lambda f: f.url)


def iter_batches(source: InputFile, string_columns: tuple[str, ...] = ()) -> Iterator[
    pa.RecordBatch
]:
    """Stream a file's rows as record batches.

    CSV values are read as strings (the processing job parses the columns it needs itself,
    so a late odd value never breaks type inference); JSON Lines and Parquet keep their types.

    Raises:
        InputError: The file is malformed; names the file and the first bad line or row.
    """
    try:
        with fsspec.open(source.url, "rb") as fh:
            if source.format == "parquet":
                yield from pq.ParquetFile(fh).iter_batches(batch_size=65536)
            elif source.format == "csv":
                yield from _csv_batches(fh, source)
            else:
                yield from _jsonl_batches(fh)
    except InputError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as exc:
        raise _locate_error(source, exc) from None


def _csv_batches(fh: io.IOBase, source: InputFile) -> Iterator[pa.RecordBatch]:
    delimiter = "\t" if source.url.lower().endswith(".tsv") else ","
    header = _csv_header(source, delimiter)
    reader = pacsv.open_csv(
        fh,
        read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )
    yield from reader


def _csv_header(source: InputFile, delimiter: str) -> list[str]:
    with fsspec.open(source.url, "rt", encoding="utf-8", newline="") as fh:
        try:
            return next(csv.reader(fh, delimiter=delimiter))
        except StopIteration:
            raise InputError(f"{source.url}: the file is empty (no header line)",
                             file=source.url) from None


def _jsonl_batches(fh: io.IOBase) -> Iterator[pa.RecordBatch]:
    yield from pajson.open_json(fh, read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES))


def _locate_error(source: InputFile, exc: Exception) -> InputError:
    """Find the first bad line of a file that Arrow refused (error path only)."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        if source.format == "csv":
            where = _first_bad_csv_row(source)
        elif source.format == "jsonl":
            where = _first_bad_json_line(source)
        else:
            where = None
    except (OSError, UnicodeDecodeError) as inner:
        where = None
        detail += f"; {inner}"
    if where is None:
        return InputError(f"{source.url}: cannot read {source.format.upper()}: {detail}",
                          file=source.url)
    line, row, why = where
    return InputError(f"{source.url}, line {line} (row {row}): {why}", file=source.url,
                      line=line, row=row)


def _first_bad_csv_row(source: InputFile) -> tuple[int, int, str] | None:
    delimiter = "\t" if source.url.lower().endswith(".tsv") else ","
    with fsspec.open(source.url, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        width = None
        line = 1
        row = 0
        try:
            for record in reader:
                if width is None:
                    width = len(record)
                elif len(record) != width:
                    return (line, row, f"expected {width} columns, found {len(record)}")
                row += 1
                line = reader.line_num + 1
        except csv.Error as exc:
            return (reader.line_num, row, f"malformed CSV: {exc}")
    return None


def _first_bad_json_line(source: InputFile) -> tuple[int, int, str] | None:
    with fsspec.open(source.url, "rt", encoding="utf-8") as fh:
        row = 0
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            row += 1
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                return (number, row, f"invalid JSON: {exc.msg} at column {exc.colno}")
            if not isinstance(value, dict):
                return (number, row, "each line must be a JSON object")
    return None
