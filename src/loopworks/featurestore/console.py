"""The SQL console's engine: read-only queries over every feature group, bounded in rows and
time, and the last queries each person ran.

A console query runs on its own DuckDB connection (``connect_groups``) where file access is
switched off and the configuration locked, so a query can read the feature groups and
nothing else on the server: no ``read_csv('/etc/passwd')``, no ``COPY ... TO``, no
``ATTACH``. Only one statement, and only SELECT (or a WITH ... SELECT, VALUES or EXPLAIN):
anything else is refused before it runs, naming the statement type. A timer interrupts a
query that runs past the time limit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from loopworks.errors import ValidationError

__all__ = ["QueryHistory", "QueryResult", "readonly_query"]

_ALLOWED = {"SELECT", "EXPLAIN"}
MAX_DOWNLOAD_ROWS = 1_000_000


@dataclass
class QueryResult:
    """A page of a read-only query's result."""

    sql: str
    table: pa.Table
    offset: int
    limit: int
    more: bool  # rows exist past this page
    seconds: float


def _check_readonly(sql: str) -> str:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValidationError(f"SQL error: {str(exc).strip()}", sql=sql) from None
    if len(statements) != 1:
        raise ValidationError(f"the console runs one statement at a time, got "
                              f"{len(statements)}", sql=sql)
    kind = statements[0].type.name
    if kind not in _ALLOWED:
        raise ValidationError(f"the console is read-only: {kind} statements are refused; "
                              "write SELECT queries (use the SDK or CLI to change data)",
                              sql=sql, statement=kind)
    return sql.strip().rstrip(";")


def readonly_query(store: Any, sql: str, *, limit: int = 100, offset: int = 0,
                   time_limit: float = 30.0) -> QueryResult:
    """Run one SELECT over the feature groups and return rows [offset, offset + limit).

    Raises:
        ValidationError: Not a single read-only statement, a SQL error, or past the time
            limit (the query is interrupted).
    """
    from loopworks.featurestore.sql import _arrow, connect_groups

    body = _check_readonly(sql)
    con = connect_groups(store)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    timer = threading.Timer(time_limit, con.interrupt)
    started = time.perf_counter()
    timer.start()
    try:
        page = _arrow(con, f"SELECT * FROM ({body}) AS q LIMIT {int(limit) + 1} "
                      f"OFFSET {int(offset)}") if not body.upper().startswith("EXPLAIN") \
            else _arrow(con, body)
    except duckdb.InterruptException:
        raise ValidationError(f"the query ran past the console's time limit of "
                              f"{time_limit:g} s and was stopped", sql=sql) from None
    except duckdb.Error as exc:
        raise ValidationError(f"SQL error: {str(exc).strip()}", sql=sql) from None
    finally:
        timer.cancel()
        con.close()
    seconds = time.perf_counter() - started
    more = page.num_rows > limit
    return QueryResult(body, page.slice(0, limit), offset, limit, more, seconds)


_meta = sa.MetaData()
history = sa.Table(
    "console_queries", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("worker_id", sa.Integer, nullable=False, index=True),
    sa.Column("sql", sa.Text, nullable=False),
    sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
)


class QueryHistory:
    """The last queries each person ran in the console (kept in the metadata database)."""

    def __init__(self, engine: sa.Engine, keep: int = 20) -> None:
        self.engine = engine
        self.keep = keep
        _meta.create_all(engine)

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
