"""The SQL console's engine: read-only queries over every feature group, bounded in rows,
time, memory and temporary disk, and the last queries each person ran.

A console query runs on its own DuckDB connection (``connect_groups``) where file access is
switched off and the configuration locked, so a query can read the feature groups and
nothing else on the server: no ``read_csv('/etc/passwd')``, no ``COPY ... TO``, no
``ATTACH``. Only one statement, and only SELECT (or a WITH ... SELECT, VALUES or an EXPLAIN
[ANALYZE] of one): anything else is refused before it runs, naming the statement type. A
timer interrupts a query that runs past the time limit; DuckDB stops one that needs more
memory than the console allows (past the memory limit it spills to temporary files, up to
their own limit), so one query cannot take the server's memory or disk.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from loopworks.errors import ValidationError
from loopworks.metadata.tables import console_queries as history

__all__ = ["MEMORY_LIMIT_MB", "TEMP_LIMIT_MB", "QueryHistory", "QueryResult",
           "readonly_query"]

_ALLOWED = {"SELECT", "EXPLAIN"}
MAX_DOWNLOAD_ROWS = 1_000_000
#: DuckDB memory one console query may use (megabytes, 10^6 bytes, as DuckDB counts them).
MEMORY_LIMIT_MB = 512
#: Temporary files one console query may spill to once past its memory (megabytes).
TEMP_LIMIT_MB = 1000

# Space and comments DuckDB skips between tokens, then what may stand before the statement
# an EXPLAIN wraps: ANALYZE, or an option list such as (FORMAT json).
_GAP = r"(?:\s|--[^\n]*|/\*.*?\*/)*"
_EXPLAIN = re.compile(rf"{_GAP}EXPLAIN\b{_GAP}(?:ANALY[SZ]E\b{_GAP})?", re.IGNORECASE | re.DOTALL)
_OPTIONS = re.compile(rf"\([^()]*\){_GAP}", re.DOTALL)


@dataclass
class QueryResult:
    """A page of a read-only query's result."""

    sql: str
    table: pa.Table
    offset: int
    limit: int
    more: bool  # rows exist past this page
    seconds: float


def _statements(sql: str) -> list[Any]:
    try:
        return duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValidationError(f"SQL error: {str(exc).strip()}", sql=sql) from None


def _refuse_unless_reading(kind: str, sql: str) -> None:
    if kind not in _ALLOWED:
        raise ValidationError(f"the console is read-only: {kind} statements are refused; "
                              "write SELECT queries (use the SDK or CLI to change data)",
                              sql=sql, statement=kind)


def _explained_kind(sql: str) -> str:
    """The type of the statement an EXPLAIN wraps (EXPLAIN ANALYZE runs it)."""
    prefix = _EXPLAIN.match(sql)
    inner = sql[prefix.end():] if prefix else ""
    candidates = [inner]
    options = _OPTIONS.match(inner)
    if options:
        candidates.append(inner[options.end():])
    for candidate in candidates:
        try:
            statements = duckdb.extract_statements(candidate)
        except duckdb.Error:
            continue
        if len(statements) == 1:
            return str(statements[0].type.name)
    # DuckDB accepted the EXPLAIN but we cannot tell what it wraps: refuse rather than guess.
    raise ValidationError("the console could not tell which statement this EXPLAIN wraps; "
                          "write EXPLAIN [ANALYZE] SELECT ...", sql=sql)


def _check_readonly(sql: str) -> tuple[str, bool]:
    """The statement to run, and whether it is an EXPLAIN (run as is, not paged)."""
    statements = _statements(sql)
    if len(statements) != 1:
        raise ValidationError(f"the console runs one statement at a time, got "
                              f"{len(statements)}", sql=sql)
    kind = statements[0].type.name
    _refuse_unless_reading(kind, sql)
    if kind == "EXPLAIN":
        inner = _explained_kind(sql)
        _refuse_unless_reading(inner, sql)
        if inner == "EXPLAIN":  # never seen from DuckDB, and nothing to explain
            raise ValidationError("the console explains one SELECT, not an EXPLAIN", sql=sql)
    return sql.strip().rstrip(";"), kind == "EXPLAIN"


def _default_threads() -> int:
    # Half the cores: the online reads and pages of the same server keep the other half.
    return max(1, (os.cpu_count() or 2) // 2)


def _megabytes(value: int) -> str:
    return f"{value / 1000:g} GB" if value >= 1000 else f"{value} MB"


def readonly_query(store: Any, sql: str, *, limit: int = 100, offset: int = 0,
                   time_limit: float = 30.0, memory_limit_mb: int = MEMORY_LIMIT_MB,
                   temp_limit_mb: int = TEMP_LIMIT_MB, threads: int | None = None
                   ) -> QueryResult:
    """Run one SELECT over the feature groups and return rows [offset, offset + limit).

    Args:
        store: The feature store whose groups the query reads.
        sql: One SELECT (WITH ... SELECT, VALUES, or EXPLAIN [ANALYZE] of a SELECT).
        limit: Rows to return.
        offset: Rows to skip first.
        time_limit: Seconds before the query is interrupted.
        memory_limit_mb: DuckDB memory the query may use (megabytes).
        temp_limit_mb: Temporary files it may spill to past that, under the store's home
            (megabytes; removed when the query ends).
        threads: DuckDB threads for the query (default: half the cores).

    Returns:
        The page of rows, whether more follow, and how long the query took.

    Raises:
        ValidationError: Not a single read-only statement, a SQL error, past the time
            limit (the query is interrupted), or past the memory and temporary file limits
            (the query is stopped).
    """
    from loopworks.featurestore.sql import connect_groups

    body, explain = _check_readonly(sql)
    spill_root = Path(store.home) / "tmp"
    spill_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-", dir=spill_root,
                                     ignore_cleanup_errors=True) as spill:
        con = connect_groups(store)
        try:
            con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
            con.execute("SET temp_directory = '{}'".format(spill.replace("'", "''")))
            con.execute(f"SET max_temp_directory_size = '{int(temp_limit_mb)}MB'")
            con.execute(f"SET threads = {int(threads or _default_threads())}")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            page, seconds = _run(con, body, explain, limit, offset, time_limit)
        except duckdb.InterruptException:
            raise ValidationError(f"the query ran past the console's time limit of "
                                  f"{time_limit:g} s and was stopped", sql=sql) from None
        except duckdb.OutOfMemoryException as exc:
            allowed = _megabytes(memory_limit_mb)
            if "max_temp_directory_size" in str(exc):
                allowed += f" in memory and {_megabytes(temp_limit_mb)} of temporary files"
            raise ValidationError(
                f"the query needed more memory than the console allows ({allowed}) and was "
                "stopped; filter or aggregate before joining and sorting, or run it with "
                "the SDK or `loopworks fs query`", sql=sql) from None
        except duckdb.Error as exc:
            raise ValidationError(f"SQL error: {str(exc).strip()}", sql=sql) from None
        finally:
            con.close()
    more = page.num_rows > limit
    return QueryResult(body, page.slice(0, limit), offset, limit, more, seconds)


def _run(con: duckdb.DuckDBPyConnection, body: str, explain: bool, limit: int, offset: int,
         time_limit: float) -> tuple[pa.Table, float]:
    from loopworks.featurestore.sql import query_arrow

    timer = threading.Timer(time_limit, con.interrupt)
    started = time.perf_counter()
    timer.start()
    try:
        page = query_arrow(con, body) if explain else query_arrow(
            con, f"SELECT * FROM ({body}) AS q LIMIT {int(limit) + 1} OFFSET {int(offset)}")
    finally:
        timer.cancel()
    return page, time.perf_counter() - started


class QueryHistory:
    """The last queries each person ran in the console (kept in the metadata database)."""

    def __init__(self, engine: sa.Engine, keep: int = 20) -> None:
        self.engine = engine
        self.keep = keep

    def add(self, worker_id: int, sql: str, ok: bool) -> None:
        """Remember a query (the same text again moves it to the top)."""
        with self.engine.begin() as conn:
            conn.execute(history.delete().where(history.c.worker_id == worker_id,
                                                history.c.sql == sql))
            conn.execute(history.insert().values(worker_id=worker_id, sql=sql, ok=ok,
                                                 ran_at=datetime.now(UTC)))
            stale = conn.execute(sa.select(history.c.id).where(
                history.c.worker_id == worker_id).order_by(history.c.id.desc())
                .offset(self.keep)).scalars().all()
            if stale:
                conn.execute(history.delete().where(history.c.id.in_(stale)))

    def recent(self, worker_id: int) -> list[dict[str, Any]]:
        """This person's queries, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(history).where(history.c.worker_id == worker_id)
                                .order_by(history.c.id.desc()).limit(self.keep)).all()
        return [{"sql": r.sql, "ran_at": r.ran_at, "ok": r.ok} for r in rows]
