"""A Delta table's commit history, read from its ``_delta_log`` entries.

Read here rather than with delta-rs' ``history``, which also lists commits newer than its
snapshot yet numbers them down from the snapshot's version (off by the commits another
writer made meanwhile) and holds the GIL throughout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["commit_history", "commit_infos"]


def commit_history(uri: str, storage_options: Mapping[str, str] | None, latest: int, *,
                   limit: int | None = None, remote: bool = False) -> list[dict[str, Any]]:
    """The table's commits from ``latest`` down, newest first (like ``DESCRIBE HISTORY``).

    Args:
        uri: The table's folder or object-store URL.
        storage_options: delta-rs storage options for a remote table.
        latest: The newest version to list.
        limit: Only the latest ``limit`` commits.
        remote: ``uri`` is an object-store URL rather than a local folder.

    Returns:
        One dict per commit still in the log: ``version``, ``timestamp`` (UTC datetime),
        ``operation``, ``rows_added`` (``None`` when not recorded), the raw ``metrics`` and
        ``metadata``, the ``loopworks.*`` keys the commit was made with.
    """
    versions = range(latest, -1 if limit is None else max(-1, latest - limit), -1)
    commits = []
    infos = commit_infos(uri, storage_options, versions, remote=remote)
    for version, commit in zip(versions, infos, strict=True):
        if commit is None:  # cleaned up with the older log entries
            break
        metrics = dict(commit.get("operationMetrics") or {})
        stamp = commit.get("timestamp")
        commits.append({
            "version": version,
            "timestamp": datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None,
            "operation": commit.get("operation"),
            "rows_added": metrics.get("num_added_rows"),
            "metrics": metrics,
            "metadata": {k: v for k, v in commit.items() if k.startswith("loopworks.")},
        })
    return commits


def commit_infos(uri: str, storage_options: Mapping[str, str] | None, versions: Sequence[int],
                 *, remote: bool = False) -> list[dict[str, Any] | None]:
    """The ``commitInfo`` of each version's log entry (``None`` when it is gone)."""
    if remote:
        from deltalake.fs import DeltaStorageHandler

        handler = DeltaStorageHandler(uri, dict(storage_options or {}))

        def read(name: str) -> bytes:
            return bytes(handler.open_input_file(name).read())
    else:
        def read(name: str) -> bytes:
            return (Path(uri) / name).read_bytes()

    def info(version: int) -> dict[str, Any] | None:
        try:
            entry = read(f"_delta_log/{version:020d}.json")
        except FileNotFoundError:
            return None
        for line in entry.splitlines():  # delta-rs and Spark write commitInfo first
            if b'"commitInfo"' in line:
                action = json.loads(line)
                if "commitInfo" in action:
                    return dict(action["commitInfo"])
        return {}

    if not remote or len(versions) < 2:
        return [info(version) for version in versions]
    with ThreadPoolExecutor(max_workers=min(8, len(versions))) as pool:  # one GET each
        return list(pool.map(info, versions))
