"""Items of a labeling job from a Ground Truth input manifest or a CSV/Parquet text column.

A manifest is JSON Lines, one object per item with ``source`` (the text) or ``source-ref``
(a file: path relative to the manifest, or absolute); every other field is kept and comes
back in the output manifest. For text tasks a ``source-ref`` file is read as the text; for
image tasks the item's source is the image's resolved absolute path (the file is checked,
not read).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from loopworks.errors import InputError
from loopworks.labeling.tasktypes import IMAGE_SUFFIXES, TaskType

__all__ = ["GOLD_FIELD", "TASK_INPUT_FIELD", "check_image", "gold_label", "read_manifest",
           "read_table_items"]


#: The manifest field that carries an item's known answer (a label or its index).
GOLD_FIELD = "gold"
#: Where an item keeps the task input a pre-annotation hook made for it (what its template
#: sees as ``task.input``); never written to outputs.
TASK_INPUT_FIELD = "loopworks:taskInput"

def gold_label(data: dict[str, Any], labels: Sequence[str],
               field: str = GOLD_FIELD) -> str | None:
    """An item's known answer (a class label; an index into ``labels`` is turned into
    its label), or None when its manifest line has none or one that is not a label."""
    value = data.get(field)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return labels[value]
    return value if isinstance(value, str) and value in labels else None


def check_image(ref: str, base: Path | None, where: str) -> str:
    """The absolute path of an image reference, checked to exist with an image suffix.

    Args:
        ref: The path as written (relative to ``base`` unless absolute).
        base: Folder relative paths start from (the manifest's); None for the current one.
        where: Where the reference came from, for the error (``"input.manifest, line 3"``).

    Raises:
        InputError: Not a local file, missing, or not a .png/.jpg/.jpeg/.gif/.webp.
    """
    if "://" in ref:
        raise InputError(f"{where}: source-ref {ref!r} is a URL; image jobs take local image "
                         "files (download them first)", where=where)
    try:
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        path = path.resolve()
        exists = path.is_file()
    except (OSError, ValueError, RuntimeError) as exc:  # too long, NUL, ~name of no user
        raise InputError(f"{where}: source-ref {ref!r} is not a usable path "
                         f"({getattr(exc, 'strerror', None) or exc})", where=where) from None
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{where}: source-ref {ref!r} is not an image file (expected one of "
                         f"{', '.join(IMAGE_SUFFIXES)})", where=where)
    if not exists:
        raise InputError(f"{where}: image {ref!r} does not exist ({path})", where=where)
    return str(path)


def read_table_items(path: str | Path, text_column: str, limit: int | None = None
                     ) -> list[tuple[str, dict[str, Any]]]:
    """Items from a CSV or Parquet file (a path or fsspec URL): the text column is the
    source, other columns kept (CSV numbers and booleans typed as pandas would).

    Raises:
        InputError: The file or the column is missing, the file is malformed (naming the
            line), or a row's text is empty.
    """
    from loopworks.files import is_local, local_path, read_table

    where = str(path)
    if is_local(where) and not local_path(where).is_file():
        raise InputError(f"{where} does not exist", file=where)
    fmt = "parquet" if where.lower().endswith((".parquet", ".pq")) else "csv"
    frame = read_table(where, input_format=fmt, infer_types=True).to_pandas()
    return frame_items(frame, text_column, where, limit)


def frame_items(frame: Any, text_column: str, where: str, limit: int | None = None
                ) -> list[tuple[str, dict[str, Any]]]:
    """Items from a DataFrame (a file's rows, or a feature-store query's result): the text
    column is the source; scalar and text columns are kept with each item.

    Raises:
        InputError: The column is missing or a row's text is empty (named with ``where``).
    """
    if text_column not in frame.columns:
        raise InputError(f"{where}: no text column {text_column!r}; columns are "
                         f"{', '.join(map(str, frame.columns))}", file=where)
    frame = frame.head(limit) if limit else frame
    keep = [c for c in frame.columns
            if frame[c].dtype.kind in "biufOSUM" or str(frame[c].dtype) in ("string", "str")]
    records = json.loads(frame[keep].to_json(orient="records", date_format="iso"))
    out = []
    for row, record in enumerate(records, start=1):
        text = record.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}, row {row}: empty {text_column!r}", file=where,
                             row=row)
        out.append((text, {"source": text, **record}))
    return out


def read_manifest(path: str | Path, task_type: TaskType | str = TaskType.TEXT_CLASSIFICATION
                  ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (source, all fields) per line of a Ground Truth input manifest.

    Args:
        path: The JSON Lines manifest.
        task_type: Image task types take ``source-ref`` image files and yield their
            absolute paths; text task types take ``source`` text or a ``source-ref`` text
            file, read here.

    Raises:
        InputError: A line is not a JSON object with a usable ``source``/``source-ref``, or
            an image is missing or not an image; names the file and line.
    """
    path = Path(path)
    task_type = TaskType(task_type)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist", file=str(path))
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: invalid JSON ({exc.msg})", file=str(path),
                                 line=number) from None
            if not isinstance(record, dict):
                raise InputError(f"{where}: each line must be a JSON object", file=str(path),
                                 line=number)
            ref = record.get("source-ref")
            if task_type.is_image:
                if not isinstance(ref, str) or not ref.strip():
                    raise InputError(f"{where}: an image job needs a 'source-ref' naming an "
                                     "image file", file=str(path), line=number)
                try:
                    yield check_image(ref, path.parent, where), record
                except InputError as exc:
                    raise InputError(exc.message, file=str(path), line=number) from None
            elif isinstance(record.get("source"), str) and record["source"].strip():
                yield record["source"], record
            elif task_type is TaskType.CUSTOM and isinstance(ref, str) and ref.strip():
                yield ref, record  # the template shows it (an image URL, an s3:// object...)
            elif isinstance(ref, str):
                file = (path.parent / ref).resolve() if "://" not in ref else None
                if file is None or not file.is_file():
                    raise InputError(f"{where}: source-ref {ref!r} is not a readable file",
                                     file=str(path), line=number)
                yield file.read_text(encoding="utf-8"), record
            else:
                raise InputError(f"{where}: needs a non-empty 'source' text or a 'source-ref'",
                                 file=str(path), line=number)


def check_items(records: Sequence[tuple[str, dict[str, Any]]], task_type: TaskType, *,
                objects_ok: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Items given in memory, checked like a manifest's lines (images exist, text not empty).

    With ``objects_ok`` an image may be an ``s3://`` object of loopworks' object store (a
    job whose page is a template shows it through ``grant_read_access``); the caller has
    checked that it exists.

    Raises:
        InputError: Names the item by its position (1-based).
    """
    out = []
    for number, (source, data) in enumerate(records, start=1):
        if task_type.is_image and objects_ok and isinstance(source, str) \
                and source.startswith("s3://"):
            pass
        elif task_type.is_image:
            source = check_image(source, None, f"item {number}")
        elif not isinstance(source, str) or not source.strip():
            raise InputError(f"item {number}: empty text", row=number)
        out.append((source, data))
    return out
