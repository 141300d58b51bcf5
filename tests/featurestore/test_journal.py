"""The write journal in one process: ownership, recovery rules, failures that leave entries.

Killed processes are in ``test_crash_recovery.py``; these cover what does not need a kill.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from loopworks.errors import ConfigurationError
from loopworks.featurestore import FeatureStore
from loopworks.featurestore.journal import IngestJournal, JournalRecord

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def rows(first: int, end: int, body: str = "v1") -> pa.Table:
    return pa.table({
        "id": pa.array([f"r{i}" for i in range(first, end)]),
        "ts": pa.array([T0 + timedelta(seconds=i) for i in range(first, end)],
                       pa.timestamp("us", tz="UTC")),
        "body": pa.array([f"{body} {i}" for i in range(first, end)]),
    })


def test_a_live_write_is_left_alone_and_a_released_one_is_finished_once(
        tmp_path: Path) -> None:
    journal = IngestJournal(tmp_path / "journal")
    finished: list[JournalRecord] = []
    entry = journal.begin("g", ttl_seconds=5)
    assert journal.recover("g", finished.append) == 0  # its owner (this thread) holds it
    assert journal.pending("g") == [entry.id]
    entry.close(done=False)  # as if its process died: the lock is gone, the file stays
    assert journal.recover("g", finished.append) == 1
    assert [(r.id, r.ttl_seconds) for r in finished] == [(entry.id, 5)]
    assert journal.pending("g") == [] and journal.recover("g", finished.append) == 0
    done = journal.begin("g")
    done.close(done=True)  # a finished write leaves nothing
    assert journal.pending("g") == []


def test_a_failing_recovery_keeps_the_entry_for_the_next_open(tmp_path: Path) -> None:
    journal = IngestJournal(tmp_path / "journal")
    journal.begin("g").close(done=False)

    def fail(record: JournalRecord) -> None:
        raise OSError("online store down")

    with pytest.raises(OSError, match="down"):
        journal.recover("g", fail)
    assert len(journal.pending("g")) == 1
    assert journal.recover("g", lambda record: None) == 1


def test_concurrent_openers_finish_each_write_once(tmp_path: Path) -> None:
    journal = IngestJournal(tmp_path / "journal")
    for _ in range(5):
        journal.begin("g").close(done=False)
    calls: list[str] = []
    guard = threading.Lock()

    def finish(record: JournalRecord) -> None:
        with guard:
            calls.append(record.id)

    threads = [threading.Thread(target=journal.recover, args=("g", finish)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 5 == len(set(calls))
    assert journal.pending("g") == []


class _Failing:
    """A real store whose ``method`` raises from its ``nth`` call on: before doing anything,
    or (``in_commit_hook``) once the online rows are staged and the offline commit is done."""

    def __init__(self, real: object, method: str, nth: int = 1, *,
                 in_commit_hook: bool = False) -> None:
        self._real, self._method, self._nth, self.calls = real, method, nth, 0
        self._in_commit_hook = in_commit_hook

    def __getattr__(self, name: str):
        attribute = getattr(self._real, name)
        if name != self._method:
            return attribute

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls < self._nth:
                return attribute(*args, **kwargs)
            if not self._in_commit_hook:
                raise OSError(f"injected failure of {name}")
            hook = kwargs.pop("before_commit")

            def then_fail() -> None:
                hook()
                raise OSError(f"injected failure of {name} before COMMIT")

            return attribute(*args, before_commit=then_fail, **kwargs)

        return call


def _group(home: Path):
    fs = FeatureStore(home=home)
    return fs, fs.create_feature_group("g", record_id="id", event_time="ts", df=rows(0, 1))


def test_a_settled_failure_leaves_no_entry(tmp_path: Path) -> None:
    fs, group = _group(tmp_path / "home")
    fs._online = _Failing(fs.online, "write", nth=2)
    with pytest.raises(OSError, match="injected"):
        group.ingest(rows(0, 30), batch_rows=10)  # batch 2 restored offline: settled
    assert fs.journal.pending("g") == []
    with FeatureStore(home=tmp_path / "home",
                      online_store_url="redis://127.0.0.1:1/0") as broken:
        with pytest.raises(ConfigurationError):  # refused before anything was written
            broken.feature_group("g").delete_record("r1", T0 + timedelta(days=1))
        assert broken.journal.pending("g") == []
    fs.close()


def test_a_failed_restore_is_rolled_forward_by_the_next_open(tmp_path: Path) -> None:
    """Batch 2's online commit fails after its offline commit, and so does the restore:
    the entry stays, and the next open writes what is offline for good online."""
    home = tmp_path / "home"
    fs, group = _group(home)
    fs._online = _Failing(fs.online, "write", nth=2, in_commit_hook=True)
    fs._offline = _Failing(fs.offline, "restore")
    with pytest.raises(OSError, match="injected failure of restore"):
        group.ingest(rows(0, 30), batch_rows=10)
    assert len(fs.journal.pending("g")) == 1
    fs._offline, fs._online = fs._offline._real, fs._online._real
    fs.close()
    with FeatureStore(home=home) as again:
        group = again.feature_group("g")
        assert again.journal.pending("g") == []
        offline = set(group.history().column("id").to_pylist())
        assert len(offline) in (20, 30)  # batch 3 may have been committed before the stop
        ids = [f"r{i}" for i in range(30)]
        online = {i for i, r in zip(ids, group.batch_get_record(ids), strict=True) if r}
        assert online == offline


def test_a_tombstone_that_failed_is_committed_by_the_next_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fs, group = _group(home)
    group.ingest(rows(0, 5))
    fs._offline = _Failing(fs.offline, "append_versions")
    with pytest.raises(OSError, match="injected"):
        group.delete_record("r2", T0 + timedelta(days=1), hard=True)
    assert group.get_record("r2") is None  # gone online, still the latest offline
    assert len(fs.journal.pending("g")) == 1
    fs._offline = fs._offline._real
    fs._specs.clear()  # as after the definition cache's second
    group = fs.feature_group("g")
    latest = fs.query("SELECT id FROM g_latest ORDER BY id")["id"].tolist()
    assert latest == ["r0", "r1", "r3", "r4"]
    assert fs.journal.pending("g") == []
    fs.close()


def test_deleting_a_group_drops_its_entries(tmp_path: Path) -> None:
    fs, _ = _group(tmp_path / "home")
    fs.journal.begin("g").close(done=False)
    fs.delete_feature_group("g")
    assert fs.journal.pending("g") == []
    fs.close()
