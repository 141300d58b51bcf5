"""Read models for people watching a job: my own count, and a job's dashboard figures.

The annotator page shows the job's progress and the worker's own count on every task, so
that count is one indexed query. The admin dashboard gathers answers per worker (with gold
accuracy), the label distribution of answers and of consolidated labels, and agreement
(Fleiss' kappa, Krippendorff's alpha) for single-label jobs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.labeling.schema import answers
from loopworks.labeling.workforce import Worker

__all__ = ["Dashboard", "dashboard", "my_answer_count"]


def my_answer_count(jobs: LabelingJobs, job: str, worker: Worker) -> int:
    """How many answers this worker has given in the job."""
    with jobs.engine.connect() as conn:
        job_id = jobs.job_row(conn, job).id
        return int(conn.execute(sa.select(sa.func.count()).select_from(answers).where(
            answers.c.job_id == job_id, answers.c.worker_id == worker.id)).scalar_one())


@dataclass
class Dashboard:
    """What the admin page of a job shows."""

    spec: JobSpec
    workers: list[dict[str, Any]]
    answer_distribution: dict[str, int]
    consolidated_distribution: dict[str, int]
    agreement: dict[str, float | None] = field(default_factory=dict)
    timeline: list[tuple[str, int]] = field(default_factory=list)


def _answer_labels(answer: Any) -> list[str]:
    """The labels an answer names, whatever the task type (for the distribution chart)."""
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, list):
        return [a for a in answer if isinstance(a, str)]
    if isinstance(answer, dict):
        marks = answer.get("entities") or answer.get("boundingBoxes") or []
        return [m["label"] for m in marks if isinstance(m, dict) and "label" in m]
    return []


def dashboard(jobs: LabelingJobs, job: str) -> Dashboard:
    """Progress, per-worker counts and quality, label distributions and agreement."""
    from loopworks.labeling.agreement import fleiss_kappa, krippendorff_alpha
    from loopworks.labeling.consolidation import consolidate

    spec = jobs.job(job)
    raw = jobs.answers(job)
    workers = jobs.worker_scores(job)
    seconds: dict[str, list[float]] = {}
    for a in raw:
        seconds.setdefault(a["worker"], []).append(a["seconds"])
    for entry in workers:
        spent = seconds.get(entry["worker"], [])
        entry["median_seconds"] = float(pd.Series(spent).median()) if spent else None
    given: Counter[str] = Counter()
    for a in raw:
        given.update(_answer_labels(a["answer"]))
    answer_distribution = {label: given.get(label, 0) for label in spec.labels}
    consolidated = {label: 0 for label in spec.labels}
    agreement: dict[str, float | None] = {"fleiss_kappa": None, "krippendorff_alpha": None}
    if raw and spec.task_type.single_label:
        frame = pd.DataFrame({"item": [a["item_id"] for a in raw],
                              "worker": [a["worker"] for a in raw],
                              "label": [a["answer"] for a in raw]})
        method = "dawid-skene" if frame["worker"].nunique() > 1 else "majority-vote"
        result = consolidate(frame, method, classes=spec.labels)
        consolidated.update(result.labels["label"].value_counts().to_dict())
        multi = frame.groupby("item")["worker"].transform("size") > 1
        if multi.any():
            agreement["fleiss_kappa"] = _finite(fleiss_kappa(frame[multi]))
            agreement["krippendorff_alpha"] = _finite(krippendorff_alpha(frame[multi]))
    return Dashboard(spec, workers, answer_distribution, consolidated, agreement,
                     timeline([a["submitted_at"] for a in raw]))


def timeline(times: list[Any], points: int = 24) -> list[tuple[str, int]]:
    """Cumulative count of events at ``points`` evenly spaced times from the first to the
    last (for a progress-over-time line)."""
    if not times:
        return []
    stamps = pd.to_datetime(pd.Series(times), utc=True).sort_values().to_numpy()
    start, end = stamps[0], stamps[-1]
    if start == end:
        return [(pd.Timestamp(start).strftime("%H:%M:%S"), len(stamps))]
    grid = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), periods=points).to_numpy()
    counts = stamps.searchsorted(grid, side="right")
    return [(pd.Timestamp(t).strftime("%m-%d %H:%M:%S"), int(c))
            for t, c in zip(grid, counts, strict=True)]


def _finite(value: float) -> float | None:
    return None if value != value else float(value)  # NaN when every answer is the same
