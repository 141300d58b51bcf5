"""A job's result: consolidated labels as a Ground Truth augmented manifest.

Each input line comes back with all its fields, plus the label attribute (the class index)
and ``<label attribute>-metadata`` (class-name, confidence, type, job-name,
human-annotated, creation-date, worker count), written to
``<out>/manifests/output/output.manifest`` with the raw answers beside it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from loopworks.labeling.consolidation import consolidate
from loopworks.labeling.jobs import LabelingJobs, TaskType, items

__all__ = ["write_output"]


def _atomic_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def write_output(jobs: LabelingJobs, job: str, out: str | Path, *,
                 method: str = "dawid-skene") -> dict[str, Any]:
    """Consolidate the job's answers and write the augmented manifest and raw answers.

    Items without answers keep their input fields only. Returns a summary with paths.
    """
    spec = jobs.job(job)
    raw = jobs.answers(job)
    out = Path(out)
    with jobs.engine.connect() as conn:
        job_id = jobs._job_row(conn, job).id
        rows = conn.execute(sa.select(items.c.id, items.c.seq, items.c.data).where(
            items.c.job_id == job_id).order_by(items.c.seq)).all()
    labeled: dict[int, dict[str, Any]] = {}
    if raw and spec.task_type is TaskType.TEXT_CLASSIFICATION:
        frame = pd.DataFrame({"item": [a["item_id"] for a in raw],
                              "worker": [a["worker"] for a in raw],
                              "label": [a["answer"] for a in raw]})
        chosen = method if frame["worker"].nunique() > 1 else "majority-vote"
        result = consolidate(frame, chosen, classes=spec.labels)
        for rec in result.labels.to_dict("records"):
            labeled[int(rec["item"])] = rec
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    attribute = spec.label_attribute
    lines = []
    for row in rows:
        record = json.loads(row.data)
        rec = labeled.get(row.id)
        if rec is not None:
            record[attribute] = spec.labels.index(rec["label"])
            record[f"{attribute}-metadata"] = {
                "class-name": rec["label"], "confidence": round(float(rec["confidence"]), 4),
                "type": f"groundtruth/{spec.task_type.value}", "job-name": f"labeling-job/{job}",
                "human-annotated": "yes", "creation-date": created,
                "worker-count": int(rec["n_answers"]), "agreement": round(float(
                    rec["agreement"]), 4)}
        lines.append(json.dumps(record, ensure_ascii=False))
    manifest = out / "manifests" / "output" / "output.manifest"
    _atomic_lines(manifest, lines)
    answers_file = out / "annotations" / "answers.jsonl"
    _atomic_lines(answers_file, [json.dumps(a, default=str) for a in raw])
    return {"manifest": str(manifest), "answers": str(answers_file), "items": len(rows),
            "labeled": len(labeled), "method": method}
