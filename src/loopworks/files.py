"""Files: finding inputs, reading and writing tables, and replacing a file atomically.

The ground floor of loopworks. Every capability reads its inputs and writes its outputs
through here, so each of them takes a file, a folder (every supported file below it), a
glob or any fsspec URL (``s3://...``, ``memory://...``), fails with the same
:class:`~loopworks.errors.InputError` naming the file and the line, and never leaves a
half-written file where a reader could find it. This module imports nothing from the
capability packages: they all stand on it.

Tables are CSV (``.csv``, ``.tsv``), JSON Lines (``.jsonl``, ``.json``, ``.ndjson``) or
Parquet (``.parquet``, ``.pq``). Reading streams record batches in blocks, so memory stays
flat however large a file is.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from loopworks.errors import ConfigurationError, InputError, MissingDependencyError

__all__ = ["FORMATS", "InputFile", "Writer", "atomic_write", "discover_inputs", "filesystem",
           "is_local", "iter_batches", "local_path", "read_table", "table_format",
           "write_table"]

#: File name endings and the table format each means.
FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
#: Writes the content to the binary file it is given (see :func:`atomic_write`).
Writer = Callable[[IO[bytes]], object]
_BLOCK_BYTES = 8 << 20
_PARQUET_BATCH_ROWS = 65536
#: fsspec protocols and the package (and loopworks extra) each needs.
_PACKAGES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcsfs"),
             "gcs": ("gcsfs", "gcsfs"), "az": ("adlfs", "adlfs"), "abfs": ("adlfs", "adlfs"),
             "abfss": ("adlfs", "adlfs")}


# ------------------------------------------------------------------------- locations
def is_local(url: str | os.PathLike[str]) -> bool:
    """Whether ``url`` names the local disk: a plain path or a ``file://`` URL."""
    text = os.fspath(url)
    return "://" not in text or text.startswith("file://")


def local_path(url: str | os.PathLike[str]) -> Path:
    """The local path of a plain path or ``file://`` URL, with ``~`` expanded."""
    return Path(os.fspath(url).removeprefix("file://")).expanduser()


def filesystem(url: str, **options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a URL and the path within it.

    Args:
        url: A path or URL (``s3://bucket/key``, ``memory://...``).
        **options: Options for the filesystem (credentials, endpoint...).

    Raises:
        MissingDependencyError: The protocol's package is not installed (gives the command).
    """
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError:
        scheme = url.split("://", 1)[0].lower()
        package, extra = _PACKAGES.get(scheme, (scheme, scheme))
        raise MissingDependencyError(package, extra, f"files on {scheme}://") from None


def table_format(path: str) -> str | None:
    """``csv``, ``jsonl`` or ``parquet`` by the file name's ending, or ``None``."""
    lower = path.lower()
    return next((fmt for ext, fmt in FORMATS.items() if lower.endswith(ext)), None)


# ---------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class InputFile:
    """One input file: its URL, format and name relative to the input root (for stable ids)."""

    url: str
    format: str
    relative: str


def discover_inputs(spec: str | Sequence[str], input_format: str | None = None
                    ) -> list[InputFile]:
    """Expand a file, folder or glob (local path or fsspec URL) into sorted input files.

    Args:
        spec: A path, folder, glob or URL, or several of them.
        input_format: Force ``csv``, ``jsonl`` or ``parquet`` instead of guessing by extension.

    Returns:
        The input files in a stable order (sorted by path).

    Raises:
        InputError: Nothing matches, or a file's format cannot be told from its name.
        MissingDependencyError: The URL's protocol needs a package that is not installed.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    found: list[InputFile] = []
    for item in specs:
        try:
            fs, _, paths = fsspec.get_fs_token_paths(item)
        except ImportError:
            filesystem(item)  # raises the install command
            raise
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        candidates: list[tuple[str, str]] = []
        if not paths:
            raise InputError(f"input {item!r} matches no file", file=item)
        for path in paths:
            if fs.isdir(path):
                for sub in sorted(fs.find(path)):
                    if table_format(sub) or input_format:
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
            fmt = input_format or table_format(path)
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


# --------------------------------------------------------------------------- reading
def iter_batches(source: InputFile) -> Iterator[pa.RecordBatch]:
    """Stream a file's rows as record batches.

    CSV values are read as text (whoever reads a column parses it, so a late odd value never
    breaks type inference); JSON Lines and Parquet keep their types.

    Raises:
        InputError: The file is malformed; names the file and the first bad line or row.
    """
    try:
        # The header first: some filesystems (memory://) hand out one shared file object.
        header = _csv_header(source) if source.format == "csv" else []
        with fsspec.open(source.url, "rb") as fh:
            if source.format == "parquet":
                yield from pq.ParquetFile(fh).iter_batches(batch_size=_PARQUET_BATCH_ROWS)
            elif source.format == "csv":
                yield from _csv_batches(fh, source, header)
            else:
                yield from pajson.open_json(
                    fh, read_options=pajson.ReadOptions(block_size=_BLOCK_BYTES))
    except InputError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as exc:
        raise _locate_error(source, exc) from None


def read_table(spec: str | Sequence[str], *, input_format: str | None = None,
               infer_types: bool = False) -> pa.Table:
    """Read a file, folder, glob or URL (or several) into one table.

    Args:
        spec: A path, folder, glob or URL, or several of them.
        input_format: Force ``csv``, ``jsonl`` or ``parquet`` instead of guessing by extension.
        infer_types: Give CSV columns the type pandas would: whole numbers, numbers or
            booleans where every value of the column is one; anything else (dates too)
            stays text.

    Returns:
        The rows of every file in order; files with other columns are aligned by name (a
        missing column is null). A file without rows still gives its columns when it has
        them (a CSV header, a Parquet schema).

    Raises:
        InputError: Nothing matches, a file is malformed (naming file and line), or the
            files' columns have types that cannot be combined.
    """
    files = discover_inputs(spec, input_format)
    tables = []
    for source in files:
        batches = list(iter_batches(source))
        table = pa.Table.from_batches(batches) if batches else _no_rows(source)
        tables.append(_typed(table) if infer_types and source.format == "csv" else table)
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        shown = ", ".join(f.url for f in files[:3]) + (" ..." if len(files) > 3 else "")
        raise InputError(f"{shown}: the files do not share one schema ({exc})",
                         file=[f.url for f in files]) from None


def _no_rows(source: InputFile) -> pa.Table:
    """The columns of a file that has no rows (none known for JSON Lines)."""
    if source.format == "parquet":
        with fsspec.open(source.url, "rb") as fh:
            return pq.ParquetFile(fh).schema_arrow.empty_table()
    if source.format == "csv":
        return pa.schema([(name, pa.string()) for name in _csv_header(source)]).empty_table()
    return pa.table({})


def _csv_batches(fh: IO[bytes], source: InputFile, header: list[str]
                 ) -> Iterator[pa.RecordBatch]:
    reader = pacsv.open_csv(
        fh,
        read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(delimiter=_delimiter(source), newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )
    yield from reader


def _delimiter(source: InputFile) -> str:
    return "\t" if source.url.lower().endswith(".tsv") else ","


def _csv_header(source: InputFile) -> list[str]:
    with fsspec.open(source.url, "rt", encoding="utf-8", newline="") as fh:
        try:
            return next(csv.reader(fh, delimiter=_delimiter(source)))
        except StopIteration:
            raise InputError(f"{source.url}: the file is empty (no header line)",
                             file=source.url) from None


def _typed(table: pa.Table) -> pa.Table:
    """CSV text columns as whole numbers, numbers or booleans where every value is one."""
    for index, name in enumerate(table.column_names):
        column = table.column(index)
        if column.null_count == len(column):
            continue
        for kind in (pa.int64(), pa.float64(), pa.bool_()):
            try:
                table = table.set_column(index, name, pc.cast(column, kind))
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
    return table


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
    with fsspec.open(source.url, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=_delimiter(source), strict=True)
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


# --------------------------------------------------------------------------- writing
def atomic_write(target: str | os.PathLike[str], data: bytes | str | Writer) -> str:
    """Replace ``target`` in one step: a reader sees the old file or the new one, never a
    part of either.

    On the local disk the content goes to a hidden file in the target's folder whose name is
    new and created exclusively (so two writers of one target never share a temporary
    file), is flushed to the disk, then renamed over the target. A remote URL (``s3://``,
    ``memory://``...) is written through fsspec to such a name beside the target, then
    moved onto it. A failure removes the temporary file and leaves the target as it was.

    Args:
        target: A path or URL; missing parent folders are made.
        data: The content (text is written as UTF-8), or a function that writes it to the
            binary file it is given (for content streamed in parts).

    Returns:
        The path or URL written.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    write: Writer = (lambda fh: fh.write(data)) if isinstance(data, bytes) else data
    if is_local(target):
        return _replace_local(local_path(target), write)
    return _replace_remote(os.fspath(target), write)


def _temporary_name(name: str) -> str:
    # A name within the usual 255-byte limit, hidden from globs such as *.json or *.parquet.
    return f".{name[:200]}.{secrets.token_hex(6)}.tmp"


def _replace_local(path: Path, write: Writer) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.with_name(_temporary_name(path.name))
        try:
            # Not mkstemp: its 0600 mode would stick to the target; O_EXCL is its uniqueness.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)
    return str(path)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; folders cannot be opened on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace_remote(url: str, write: Writer) -> str:
    fs, path = filesystem(url)
    parent, _, name = path.rpartition("/")
    if parent:
        fs.makedirs(parent, exist_ok=True)
    temporary = f"{parent}/{_temporary_name(name)}" if parent else _temporary_name(name)
    try:
        with fs.open(temporary, "wb") as fh:
            write(fh)
        fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(Exception):
            if fs.exists(temporary):
                fs.rm(temporary)
        raise
    return url


def write_table(table: pa.Table, target: str | os.PathLike[str], *,
                format: str | None = None) -> str:
    """Write a table as Parquet, CSV or JSON Lines, atomically (see :func:`atomic_write`).

    CSV is Arrow's (quoted where needed; list columns must be made text first). JSON Lines
    has one object per row: dates and times as ISO text, whole numbers stay whole beside
    nulls.

    Args:
        table: The rows.
        target: A path or URL; its ending picks the format unless ``format`` is given.
        format: ``parquet``, ``csv`` or ``jsonl``.

    Returns:
        The path or URL written.

    Raises:
        ConfigurationError: The format is unknown or cannot be told from the name.
    """
    fmt = format or table_format(os.fspath(target))
    if fmt == "parquet":
        return atomic_write(target, lambda fh: pq.write_table(table, fh))
    if fmt == "csv":
        return atomic_write(target, lambda fh: pacsv.write_csv(table, fh))
    if fmt == "jsonl":
        return atomic_write(target, lambda fh: _write_jsonl(table, fh))
    raise ConfigurationError(f"cannot tell the table format of {os.fspath(target)!r}; end it "
                             "in .parquet, .csv or .jsonl", setting="format",
                             valid_values=["parquet", "csv", "jsonl"])


def _write_jsonl(table: pa.Table, fh: IO[bytes]) -> None:
    import pandas as pd

    for index, field in enumerate(table.schema):  # dates as ISO text, not epoch numbers
        if pa.types.is_date(field.type):
            table = table.set_column(index, field.name, table.column(index).cast(pa.string()))
    # Nullable pandas integers keep 5 as 5 (not 5.0) and a missing value as null.
    mapper = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype()}.get
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="\n", write_through=True)
    for batch in table.to_batches(max_chunksize=200_000):
        frame = batch.to_pandas(types_mapper=mapper)
        if len(frame):
            lines = frame.to_json(orient="records", lines=True, force_ascii=False,
                                  date_format="iso")
            text.write(lines.rstrip("\n") + "\n")
    text.detach()  # the caller owns and closes the binary file
