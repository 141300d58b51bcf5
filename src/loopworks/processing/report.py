"""Job reports and the job records kept under ``$LOOPWORKS_HOME/jobs``."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from loopworks.errors import JobNotFoundError
from loopworks.files import atomic_write

__all__ = ["JobReport", "JobStore", "FileJobStore", "token_length_stats"]


@dataclass
class JobReport:
    """What a processing job did: counts, timings, token-length figures and errors.

    ``status`` is ``queued`` (waiting for a server's job slot), ``running``, ``succeeded`` or
    ``failed``; while it runs, ``progress`` holds the rows done (and expected) per stage.
    """

    job_id: str
    status: str = "running"
    created_at: str = ""
    finished_at: str | None = None
    inputs: list[str] = field(default_factory=list)
    output: str = ""
    output_format: str = "parquet"
    engine: str = "local"
    workers: int = 1
    tokenizer: dict[str, Any] = field(default_factory=dict)
    max_seq_length: int = 128
    options: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    error: str | None = None
    progress: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobReport:
        """Rebuild a report from :meth:`to_dict` output (unknown keys are ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def token_length_stats(lengths: np.ndarray, max_seq_length: int) -> dict[str, Any]:
    """Percentiles of untruncated token lengths, truncation share and padding share."""
    if lengths.size == 0:
        return {"reviews": 0}
    pct = np.percentile(lengths, [50, 90, 95, 99])
    kept = np.minimum(lengths, max_seq_length)
    return {
        "reviews": int(lengths.size),
        "mean": round(float(lengths.mean()), 2),
        "p50": float(pct[0]), "p90": float(pct[1]), "p95": float(pct[2]), "p99": float(pct[3]),
        "max": int(lengths.max()),
        "share_truncated": round(float((lengths > max_seq_length).mean()), 6),
        "share_padding": round(float(1.0 - kept.sum() / (lengths.size * max_seq_length)), 6),
        "histogram": _histogram(lengths, max_seq_length),
    }


def _histogram(lengths: np.ndarray, max_seq_length: int, bins: int = 16) -> dict[str, Any]:
    """Counts of token lengths in equal bins up to max_seq_length, plus one bin for longer
    (the reviews truncation cuts), for the job page's chart."""
    width = max(1, -(-max_seq_length // bins))
    edges = list(range(0, max_seq_length + 1, width))
    if edges[-1] != max_seq_length:
        edges.append(max_seq_length)
    counts, _ = np.histogram(np.minimum(lengths, max_seq_length), bins=edges)
    counts[-1] -= int((lengths > max_seq_length).sum())
    return {"edges": edges, "counts": [int(c) for c in counts],
            "over": int((lengths > max_seq_length).sum())}


class JobStore(Protocol):
    """Where job records live (a folder of JSON files today; a database later)."""

    def save(self, report: JobReport) -> None:
        """Create or replace a job's record."""

    def get(self, job_id: str) -> JobReport:
        """Return one job's record; raise JobNotFoundError if absent."""

    def list(self) -> list[JobReport]:
        """All records, newest first."""


class FileJobStore:
    """Job records as one JSON file each, written atomically."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def save(self, report: JobReport) -> None:
        """Create or replace a job's record (atomically: never half-written)."""
        atomic_write(self.folder / f"{report.job_id}.json",
                     json.dumps(report.to_dict(), indent=2))

    def get(self, job_id: str) -> JobReport:
        """Return one job's record, also by unique id prefix (an id is letters, digits,
        '-', '_' and '.': nothing that could name another file, nor a glob)."""
        valid = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", job_id or "") is not None
        path = self.folder / f"{job_id}.json"
        if not valid or not path.is_file():
            matches = sorted(p for p in self.folder.iterdir()
                             if p.name.endswith(".json") and p.name.startswith(job_id)) \
                if valid and self.folder.is_dir() else []
            if len(matches) != 1:
                shown = job_id if len(job_id) <= 80 else job_id[:80] + "..."
                raise JobNotFoundError(
                    f"no job {shown!r} under {self.folder} (see `loopworks jobs list`)",
                    job_id=shown,
                )
            path = matches[0]
        return JobReport.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def list(self) -> list[JobReport]:
        """All records, newest first."""
        if not self.folder.is_dir():
            return []
        reports = [JobReport.from_dict(json.loads(p.read_text(encoding="utf-8")))
                   for p in self.folder.glob("*.json")]
        return sorted(reports, key=lambda r: r.created_at, reverse=True)
