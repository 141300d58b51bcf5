"""A job's result: consolidated labels as a Ground Truth augmented manifest.

Each input line comes back with all its fields, plus the label attribute (the class index)
and ``<label attribute>-metadata`` (class-name, confidence, type, job-name,
human-annotated, creation-date, worker count), written to
``<out>/manifests/output/output.manifest`` with the raw answers beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
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
                 method: str = "dawid-skene", feature_group: str | None = None,
                 id_field: str | None = None, home: str | Path | None = None
                 ) -> dict[str, Any]:
    """Consolidate the job's answers and write the augmented manifest and raw answers.

    Items without answers keep their input fields only. With ``feature_group``, every
    consolidated label also lands there as a time-stamped record with its provenance
    (label, label index, confidence, agreement, workers, method, job), keyed by the
    manifest field ``id_field``: a relabel is a new event, so training sets can take the
    labels as they were at any time. Returns a summary with paths.
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
    summary: dict[str, Any] = {"manifest": str(manifest), "answers": str(answers_file),
                               "items": len(rows), "labeled": len(labeled), "method": method}
    if feature_group:
        summary["feature_group"] = _to_feature_group(
            rows, labeled, spec.labels, job, method, feature_group, id_field, home)
    return summary


def _to_feature_group(rows: Sequence[Any], labeled: dict[int, dict[str, Any]], labels: list[str],
                      job: str, method: str, name: str, id_field: str | None,
                      home: str | Path | None) -> dict[str, Any]:
    from loopworks.errors import ConfigurationError, NotFoundError
    from loopworks.featurestore import FeatureStore

    if not id_field:
        raise ConfigurationError("labels into a feature group need --id-field: the manifest "
                                 "field that identifies each item (e.g. review_id)",
                                 setting="id_field")
    now = datetime.now(UTC)
    records = []
    for row in rows:
        rec = labeled.get(row.id)
        if rec is None:
            continue
        data = json.loads(row.data)
        if data.get(id_field) in (None, ""):
            raise ConfigurationError(f"item {row.seq} has no {id_field!r} field",
                                     setting="id_field")
        records.append({id_field: str(data[id_field]), "labeled_at": now,
                        "label": rec["label"], "label_index": labels.index(rec["label"]),
                        "confidence": float(rec["confidence"]),
                        "agreement": float(rec["agreement"]),
                        "workers": int(rec["n_answers"]), "method": method, "job": job,
                        "human_annotated": True})
    if not records:
        return {"name": name, "records": 0}
    frame = pd.DataFrame(records)
    with FeatureStore(home=home) as store:
        try:
            group = store.feature_group(name)
        except NotFoundError:
            group = store.create_feature_group(
                name, record_id=id_field, event_time="labeled_at", df=frame,
                description="Consolidated human labels with provenance (loopworks label)",
                tags={"source": "loopworks label"})
        report = group.ingest(frame)
    return {"name": name, "records": report.rows}
