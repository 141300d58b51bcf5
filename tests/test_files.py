"""The ground floor for files: atomic writes, reading tables from paths, globs and URLs."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopworks.errors import InputError
from loopworks.files import (
    atomic_write,
    discover_inputs,
    is_local,
    local_path,
    read_table,
    write_table,
)

ROWS = pa.table({"review_id": ["r1", "r2", "r3"], "stars": [5, 1, 3],
                 "text": ["great, really", "bad", "fine"]})


@pytest.fixture
def memory() -> Iterator[str]:
    """A fresh folder on fsspec's in-memory filesystem, removed afterwards."""
    root = f"memory:///lw-{uuid.uuid4().hex[:8]}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _write_all(folder: Path | str) -> None:
    """The same three rows as CSV, JSON Lines and Parquet under ``folder``."""
    write_table(ROWS, f"{folder}/part-a.csv")
    write_table(ROWS, f"{folder}/nested/part-b.jsonl")
    write_table(ROWS, f"{folder}/part-c.parquet")


# ---------------------------------------------------------------------- atomic writes
def test_two_writers_of_one_target_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    both_open = threading.Barrier(2, timeout=10)
    seen: dict[str, tuple[int, str]] = {}

    def writer(name: str) -> None:
        def write(fh: IO[bytes]) -> None:
            fh.write(name.encode() * 1000)
            fh.flush()
            both_open.wait()  # each holds its temporary file open while the other writes
            seen[name] = (os.fstat(fh.fileno()).st_ino, fh.name)  # type: ignore[attr-defined]
            both_open.wait()
        atomic_write(target, write)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert seen["a"][0] != seen["b"][0] and seen["a"][1] != seen["b"][1]
    assert target.read_bytes() in (b"a" * 1000, b"b" * 1000)
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]  # none left


def test_a_reader_only_ever_sees_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "table.bin"
    contents = [bytes([i]) * 300_000 for i in range(1, 5)]
    atomic_write(target, contents[0])
    stop = threading.Event()
    torn: list[int] = []

    def write(body: bytes) -> None:
        for _ in range(15):
            atomic_write(target, body)

    def read() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in contents:
                torn.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(c,)) for c in contents]
    for t in writers:
        t.start()
    for t in writers:
        t.join(timeout=60)
    stop.set()
    reader.join(timeout=10)
    assert torn == []
    assert [p.name for p in tmp_path.iterdir()] == ["table.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "labels.csv"
    atomic_write(target, "old\n")

    def fail(fh: IO[bytes]) -> None:
        fh.write(b"half a ")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, fail)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]


def test_a_new_file_gets_the_usual_permissions_not_mkstemps(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "shared.json", "{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644


def test_remote_urls_are_written_whole_through_fsspec(memory: str) -> None:
    url = f"{memory}/flows/check/output.json"
    assert atomic_write(url, '{"ok": true}') == url

    def fail(fh: IO[bytes]) -> None:
        fh.write(b"{")
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        atomic_write(url, fail)
    fs = fsspec.filesystem("memory")
    with fsspec.open(url, "rt") as fh:
        assert fh.read() == '{"ok": true}'
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"{memory}/flows/check", detail=False)] \
        == ["output.json"]


def test_local_paths_and_urls() -> None:
    assert is_local("data/reviews.csv") and is_local("file:///tmp/x.csv")
    assert is_local(Path("x.parquet")) and not is_local("s3://bucket/x.parquet")
    assert local_path("file:///tmp/x.csv") == Path("/tmp/x.csv")
    assert local_path("~/x.csv") == Path.home() / "x.csv"


# --------------------------------------------------------------------------- reading
@pytest.mark.parametrize("name", ["part-a.csv", "nested/part-b.jsonl", "part-c.parquet"])
def test_each_format_reads_back(tmp_path: Path, name: str) -> None:
    _write_all(tmp_path)
    table = read_table(str(tmp_path / name))
    assert table.column("review_id").to_pylist() == ["r1", "r2", "r3"]
    assert table.column("text").to_pylist()[0] == "great, really"
    # CSV is read as text (its reader parses what it needs); the others keep their types.
    expected = ["5", "1", "3"] if name.endswith(".csv") else [5, 1, 3]
    assert table.column("stars").to_pylist() == expected


def test_csv_types_can_be_inferred_as_pandas_would(tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    path.write_text("item,worker,label,score,ok,day\n1,a,2,0.5,true,2024-01-02\n"
                    "2,b,1,,false,2024-01-03\n")
    table = read_table(str(path), infer_types=True)
    assert table.schema.types == [pa.int64(), pa.string(), pa.int64(), pa.float64(),
                                  pa.bool_(), pa.string()]  # dates stay text


def test_folders_and_globs_find_every_table_in_a_stable_order(tmp_path: Path) -> None:
    _write_all(tmp_path)
    found = discover_inputs(str(tmp_path))
    assert [f.relative for f in found] == ["nested/part-b.jsonl", "part-a.csv",
                                           "part-c.parquet"]
    assert [f.format for f in discover_inputs(str(tmp_path / "*.c*"))] == ["csv"]
    typed = read_table([str(tmp_path / "nested"), str(tmp_path / "part-c.parquet")])
    assert typed.num_rows == 6 and typed.schema.field("stars").type == pa.int64()
    with pytest.raises(InputError, match="the files do not share one schema"):
        read_table(str(tmp_path))  # CSV's stars are text, the others' numbers


def test_an_fsspec_url_reads_like_a_path(memory: str) -> None:
    _write_all(memory)
    assert read_table(f"{memory}/part-c.parquet").equals(ROWS)
    assert read_table(f"{memory}/nested/part-b.jsonl").column("stars").to_pylist() == [5, 1, 3]
    assert [f.url for f in discover_inputs(f"{memory}/*.csv")] == [f"{memory}/part-a.csv"]
    assert read_table(f"{memory}/part-a.csv").column("text").to_pylist()[0] == "great, really"
    assert read_table(f"{memory}/*.parquet").num_rows == 3


def test_a_file_without_rows_still_has_its_columns(tmp_path: Path) -> None:
    pq.write_table(ROWS.slice(0, 0), tmp_path / "empty.parquet")
    (tmp_path / "header.csv").write_text("review_id,text\n")
    assert read_table(str(tmp_path / "empty.parquet")).schema.names == ROWS.schema.names
    assert read_table(str(tmp_path / "header.csv")).schema.names == ["review_id", "text"]


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("name", "body", "where", "why"), [
    ("bad.csv", "id,text\n1,fine\n2,too,many\n", "line 3 (row 2)", "expected 2 columns, found 3"),
    ("bad.jsonl", '{"id": 1}\n{"id": 2,\n', "line 2 (row 2)", "invalid JSON"),
    ("bad.jsonl", '{"id": 1}\n[1, 2]\n', "line 2 (row 2)", "each line must be a JSON object"),
])
def test_a_malformed_file_is_named_with_its_line(tmp_path: Path, memory: str, name: str,
                                                 body: str, where: str, why: str) -> None:
    for url in (str(tmp_path / name), f"{memory}/{name}"):
        with fsspec.open(url, "wt") as fh:
            fh.write(body)
        with pytest.raises(InputError) as info:
            read_table(url)
        assert str(info.value).startswith(f"{url}, {where}: {why}")
        assert info.value.file == url and info.value.line == int(where.split()[1])


def test_missing_inputs_and_unknown_formats_say_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_table(str(tmp_path / "nope.csv"))
    with pytest.raises(InputError, match="matches no file"):
        read_table(str(tmp_path / "*.parquet"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="cannot tell the format"):
        read_table(str(tmp_path / "notes.txt"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match=r"empty\.csv: the file is empty"):
        read_table(str(tmp_path / "empty.csv"))
