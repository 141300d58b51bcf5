"""Records written online now and appended to the history a moment later (SageMaker's
PutRecord semantics): nothing acknowledged is lost when the writer is killed, before its
flush or in the middle of one, and nothing is appended twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from loopworks import FeatureStore

WRITER = """
import os, signal, sys
from loopworks import FeatureStore
store = FeatureStore(home=sys.argv[1])
store.spool_flush_seconds = float(sys.argv[3])
group = store.feature_group("spooled")
for i in range(int(sys.argv[2])):
    assert group.put_record({"review_id": f"r{i}", "EventTime": 1714564800.0 + i,
                             "sentiment": i % 3 - 1}, offline_later=True)
print("acknowledged", flush=True)
if sys.argv[3] == "3600":
    os.kill(os.getpid(), signal.SIGKILL)  # before any flush
store.flush_spooled()
"""


def _store(home: Path) -> FeatureStore:
    store = FeatureStore(home=home)
    frame = pd.DataFrame({"review_id": ["seed"], "EventTime": [1714564800.0],
                          "sentiment": [0]})
    store.create_feature_group("spooled", record_id="review_id", event_time="EventTime",
                               df=frame)
    return store


def _offline_ids(store: FeatureStore) -> list[str]:
    if not store.offline.exists("spooled"):
        return []
    return list(store.query('SELECT review_id FROM "spooled" ORDER BY review_id')["review_id"])


def test_online_at_once_offline_soon(tmp_path: Path) -> None:
    store = _store(tmp_path / "home")
    group = store.feature_group("spooled")
    store.spool_flush_seconds = 0.1
    for i in range(20):
        group.put_record({"review_id": f"r{i}", "EventTime": 1714564800.0 + i,
                          "sentiment": 1}, offline_later=True)
        assert group.get_record(f"r{i}") is not None
    deadline = time.monotonic() + 30
    while len(_offline_ids(store)) < 20:
        assert time.monotonic() < deadline, _offline_ids(store)
        time.sleep(0.05)
    assert sorted(_offline_ids(store)) == sorted(f"r{i}" for i in range(20))
    assert store.offline.version("spooled") < 20  # flushes carried many records each
    store.close()
    assert not store.spool.has_pending("spooled")


def _run_writer(home: Path, records: int, flush_seconds: str,
                env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(home), str(records),
                             flush_seconds], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_a_writer_killed_before_its_flush_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _store(home).close()
    writer = _run_writer(home, 30, "3600")
    out, _ = writer.communicate(timeout=120)
    assert "acknowledged" in out and writer.returncode == -signal.SIGKILL
    store = FeatureStore(home=home)
    group = store.feature_group("spooled")  # opening the group finishes the dead writer's
    assert sorted(_offline_ids(store)) == sorted(f"r{i}" for i in range(30))
    assert all(group.get_record(f"r{i}") is not None for i in range(30))
    store.feature_group("spooled").recover()  # again: nothing twice
    assert len(_offline_ids(store)) == 30


def test_a_flush_killed_after_its_commit_is_not_appended_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _store(home).close()
    signal_file = tmp_path / "paused"
    writer = _run_writer(home, 10, "0.05", {"LOOPWORKS_PAUSE_AT": "spool.offline-committed",
                                            "LOOPWORKS_PAUSE_FILE": str(signal_file)})
    deadline = time.monotonic() + 120
    while not signal_file.exists():
        assert time.monotonic() < deadline and writer.poll() is None, "never paused"
        time.sleep(0.05)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "acknowledged"  # all ten, while paused
    writer.kill()
    writer.communicate(timeout=30)
    store = FeatureStore(home=home)
    first = len(_offline_ids(store))
    assert first >= 1  # the paused flush had committed
    store.feature_group("spooled")  # recovery finishes the rest, the committed flush once
    ids = _offline_ids(store)
    assert sorted(ids) == sorted(f"r{i}" for i in range(10))
    assert store.spool.interrupted("spooled") == []


@pytest.mark.parametrize("later", [False, True])
def test_a_newer_record_wins_either_way(tmp_path: Path, later: bool) -> None:
    store = _store(tmp_path / "home")
    group = store.feature_group("spooled")
    assert group.put_record({"review_id": "x", "EventTime": 1714564900.0, "sentiment": 1},
                            offline_later=later)
    assert group.put_record({"review_id": "x", "EventTime": 1714564800.0, "sentiment": -1},
                            offline_later=later) is False
    assert group.get_record("x")["sentiment"] == 1
    store.close()


def test_flush_spooled_waits_for_a_flush_under_way(tmp_path) -> None:
    """A caller that flushes before reading the history (ListRecords) sees every record
    acknowledged before it, even while the flusher thread is in the middle of a flush."""
    from datetime import UTC, datetime

    when = datetime(2024, 1, 1, tzinfo=UTC)
    with FeatureStore(home=tmp_path / "home") as store:
        store.spool_flush_seconds = 0.01  # the flusher runs all the time
        group = store.create_feature_group("g", record_id="id", event_time="t", df=pd.DataFrame(
            {"id": ["a"], "t": [when], "x": [1]}))
        missing = []
        for i in range(60):
            group.put_record({"id": f"r{i}", "t": when, "x": i}, offline_later=True)
            time.sleep(0.009)
            store.flush_spooled()
            seen = int(store.query('SELECT count(*) AS n FROM "g"')["n"][0])
            if seen != i + 1:
                missing.append((i + 1, seen))
        assert missing == []
