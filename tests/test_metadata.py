"""The metadata database: SQLite's WAL checkpoints moved off the request path in servers."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

from loopworks.metadata import dispose_engine, open_engine
from loopworks.metadata.database import BackgroundCheckpointer


def test_background_checkpointer_takes_over_the_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    checkpointer = BackgroundCheckpointer(engine, every_seconds=0.05)
    try:
        with engine.connect() as conn:  # the engine's connections no longer checkpoint
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": i} for i in range(5000)])
        time.sleep(0.5)
        probe = sqlite3.connect(tmp_path / "meta.db")
        busy, frames, done = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
        assert busy == 0 and frames == done  # nothing left for anyone else to copy
    finally:
        checkpointer.close()
    with engine.connect() as conn:  # back to SQLite's automatic checkpoints
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 5000
    dispose_engine(url)


def test_checkpointer_leaves_postgres_and_memory_alone() -> None:
    engine = sa.create_engine("sqlite://")
    assert BackgroundCheckpointer(engine)._thread is None
