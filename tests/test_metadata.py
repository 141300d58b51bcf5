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


def test_the_wal_stays_bounded_while_readers_keep_it_busy(tmp_path: Path) -> None:
    """PASSIVE checkpoints cannot reset a WAL that readers keep using, so under steady load
    it only grew; past its limit a TRUNCATE checkpoint cuts it once the readers move on."""
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
    limit = 256 * 1024
    checkpointer = BackgroundCheckpointer(engine, every_seconds=3600, wal_limit_bytes=limit,
                                          quiet_seconds=3600)
    try:
        reader = sqlite3.connect(tmp_path / "meta.db")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds a snapshot: a busy WAL
        for _ in range(20):
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (:x)"),
                             [{"x": "y" * 200} for _ in range(200)])
            checkpointer.run_once()
        grown = checkpointer.wal_bytes()
        assert grown is not None and grown > limit  # the reader kept it from resetting
        reader.rollback()
        reader.close()
        checkpointer.run_once()  # past the limit, no reader left: cut to nothing
        assert checkpointer.wal_bytes() == 0 and checkpointer.truncations >= 1
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 4000
    finally:
        checkpointer.close()
    dispose_engine(url)


def test_a_quiet_database_gets_its_wal_truncated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = open_engine(url)
    checkpointer = BackgroundCheckpointer(engine, every_seconds=3600, quiet_seconds=0)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": i} for i in range(100)])
        assert (checkpointer.wal_bytes() or 0) > 0
        checkpointer.run_once()  # notes the size
        checkpointer.run_once()  # unchanged since: quiet, so truncated
        assert checkpointer.wal_bytes() == 0
    finally:
        checkpointer.close()
    dispose_engine(url)


def test_threads_first_connecting_to_a_new_database_together(tmp_path: Path) -> None:
    """A server's threads open their first connections to a new SQLite file at once; the
    switch to WAL does not wait for the others, and no connection may fail for it."""
    import threading

    for trial in range(40):
        url = f"sqlite:///{tmp_path / f'meta-{trial}.db'}"
        start = threading.Barrier(8)
        errors: list[BaseException] = []

        def connect(url: str = url, start: threading.Barrier = start,
                    errors: list[BaseException] = errors) -> None:
            start.wait()
            try:
                with open_engine(url).connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=connect) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with open_engine(url).connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        dispose_engine(url)
        assert not errors, errors[:1]
