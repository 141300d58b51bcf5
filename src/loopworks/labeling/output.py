"""A job's result: consolidated labels as a Ground Truth augmented manifest.

Each input line comes back with all its fields, plus the label attribute (the class index)
and ``<label attribute>-metadata`` (class-name, confidence, type, job-name,
human-annotated, creation-date; loopworks' additions under ``loopworks``), written to
``<out>/manifests/output/output.manifest`` with the raw answers beside it.

Per task type, in Ground Truth's shapes: single-label classification (text or image) gives
the class index; multi-label a list of class indexes with ``class-map`` and
``confidence-map`` (a label is kept when at least half the item's workers chose it); named
entities ``{"annotations": {"entities": [{"startOffset", "endOffset", "label"}],
"labels": [{"label"}]}}`` with per-entity confidences (spans a strict majority of the
workers marked identically); bounding boxes (``groundtruth/object-detection``)
``{"annotations": [{"class_id", "left", "top", "width", "height"}], "image_size": [...]}``
with per-object confidences (see :func:`~loopworks.labeling.tasktypes.consolidate_boxes`).
Failed items carry ``failure-reason`` in their metadata and no label.

Every label says who made it: people's labels have ``human-annotated: "yes"``; labels from
automated labeling's model have ``human-annotated: "no"`` and the model's ``confidence``.
What loopworks adds to Ground Truth's fields sits under the metadata's ``loopworks`` key:
``worker-count`` and ``agreement`` of people's labels, a custom job's ``worker-answers``,
and the ``model-version`` (``autolabel-<job>:<version>`` in the model registry) and
``auto-label-round`` of machine labels.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from loopworks.errors import ConfigurationError
from loopworks.files import atomic_write
from loopworks.labeling.consolidation import consolidate
from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.labeling.manifest import TASK_INPUT_FIELD
from loopworks.labeling.schema import ItemState, items, machine_labels
from loopworks.labeling.tasktypes import (
    TaskType,
    consolidate_boxes,
    consolidate_spans,
    majority_share,
)

__all__ = ["EXTRAS", "OutputRecords", "output_records", "write_output"]

#: Where a label's metadata keeps what loopworks adds to Ground Truth's fields (workers,
#: agreement, the custom answers, the automated-labeling model and round).
EXTRAS = "loopworks"


@dataclass
class OutputRecords:
    """A job's output manifest as records (one per input line, in order), the raw answers,
    and what went into them (see :func:`output_records`)."""

    spec: JobSpec
    records: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    labeled: int
    rows: list[Any]
    consolidated: dict[int, dict[str, Any]]
    machine: dict[int, Any]


def output_records(jobs: LabelingJobs, job: str, *, method: str = "dawid-skene"
                   ) -> OutputRecords:
    """Consolidate the job's answers into its output manifest's records: each input line
    with the label attribute and its metadata (Ground Truth's shapes, see the module)."""
    spec = jobs.job(job)
    raw = jobs.answers(job)
    with jobs.engine.connect() as conn:
        job_id = jobs.job_row(conn, job).id
        rows = conn.execute(sa.select(items.c.id, items.c.seq, items.c.data, items.c.source,
                                      items.c.state, items.c.failure_reason).where(
            items.c.job_id == job_id).order_by(items.c.seq)).all()
        machine = {r.item_id: r for r in conn.execute(sa.select(machine_labels).where(
            machine_labels.c.job_id == job_id))} if spec.auto_label is not None else {}
    labeled: dict[int, dict[str, Any]] = {}
    if raw and spec.task_type.single_label:
        frame = pd.DataFrame({"item": [a["item_id"] for a in raw],
                              "worker": [a["worker"] for a in raw],
                              "label": [a["answer"] for a in raw]})
        chosen = method if frame["worker"].nunique() > 1 else "majority-vote"
        result = consolidate(frame, chosen, classes=spec.labels)
        for rec in result.labels.to_dict("records"):
            labeled[int(rec["item"])] = rec
    per_item: dict[int, list[Any]] = {}
    for a in raw:
        per_item.setdefault(a["item_id"], []).append(a["answer"])
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    attribute = spec.label_attribute
    common = {"type": spec.task_type.output_type, "job-name": f"labeling-job/{job}",
              "human-annotated": "yes", "creation-date": created}
    records = []
    n_labeled = 0
    for row in rows:
        record = json.loads(row.data)
        record.pop(TASK_INPUT_FIELD, None)
        records.append(record)
        if row.state == ItemState.FAILED:
            record[f"{attribute}-metadata"] = {
                "failure-reason": row.failure_reason, "type": common["type"],
                "job-name": common["job-name"], "human-annotated": "no",
                "creation-date": created}
            continue
        given = per_item.get(row.id)
        made = machine.get(row.id)
        if made is not None:
            record[attribute] = spec.labels.index(made.label)
            record[f"{attribute}-metadata"] = {
                "class-name": made.label, "confidence": round(float(made.confidence), 4),
                **common, "human-annotated": "no", EXTRAS: {
                    "model-version": made.model_version, "auto-label-round": int(made.round)}}
        elif spec.task_type.single_label and row.id in labeled:
            rec = labeled[row.id]
            record[attribute] = spec.labels.index(rec["label"])
            record[f"{attribute}-metadata"] = {
                "class-name": rec["label"], "confidence": round(float(rec["confidence"]), 4),
                **common, EXTRAS: {"worker-count": int(rec["n_answers"]),
                                   "agreement": round(float(rec["agreement"]), 4)}}
        elif given and not spec.task_type.single_label:
            value, meta = _structured(spec, given, row.source)
            record[attribute] = value
            extras = {"worker-count": len(given), **meta.pop(EXTRAS, {})}
            record[f"{attribute}-metadata"] = {**meta, **common, EXTRAS: extras}
        else:
            continue
        n_labeled += 1
    return OutputRecords(spec, records, raw, n_labeled, list(rows), labeled, machine)


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
    if feature_group and not spec.task_type.single_label:
        raise ConfigurationError(f"labels of a {spec.task_type.value} job cannot go into a "
                                 "feature group yet (single-label jobs only)",
                                 setting="feature_group")
    built = output_records(jobs, job, method=method)
    out = Path(out)
    manifest = out / "manifests" / "output" / "output.manifest"
    atomic_write(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                   for r in built.records))
    answers_file = out / "annotations" / "answers.jsonl"
    atomic_write(answers_file, "".join(json.dumps(a, default=str) + "\n"
                                       for a in built.answers))
    summary: dict[str, Any] = {"manifest": str(manifest), "answers": str(answers_file),
                               "items": len(built.rows), "labeled": built.labeled,
                               "method": method}
    if feature_group:
        summary["feature_group"] = _to_feature_group(
            built.rows, built.consolidated, built.answers, spec.labels, job, method,
            feature_group, id_field, home, built.machine)
    return summary


def _structured(spec: JobSpec, given: list[Any], source: str
                ) -> tuple[Any, dict[str, Any]]:
    """Label attribute value and metadata for multi-label, span, box and custom-form
    answers, in Ground Truth's shapes."""
    n = len(given)
    if spec.task_type is TaskType.CUSTOM:
        # No consolidation function was named: the answer most workers gave (as a whole),
        # with every worker's answer beside it, as a post-annotation hook would see them.
        keys = Counter(json.dumps(a, sort_keys=True) for a in given)
        chosen = next(a for a in given if json.dumps(a, sort_keys=True)
                      == keys.most_common(1)[0][0])
        return chosen, {EXTRAS: {"agreement": round(majority_share(given), 4),
                                 "worker-answers": given}}
    if spec.task_type is TaskType.TEXT_CLASSIFICATION_MULTILABEL:
        votes = Counter(label for answer in given for label in set(answer))
        chosen = sorted((spec.labels.index(label) for label, c in votes.items() if c * 2 >= n))
        return chosen, {
            "class-map": {str(i): spec.labels[i] for i in chosen},
            "confidence-map": {str(i): round(votes[spec.labels[i]] / n, 4) for i in chosen}}
    if spec.task_type is TaskType.NAMED_ENTITY_RECOGNITION:
        spans = consolidate_spans(given)
        return ({"annotations": {
            "entities": [{"startOffset": s["start"], "endOffset": s["end"], "label": s["label"]}
                         for s in spans],
            "labels": [{"label": label} for label in spec.labels]}},
            {"entities": [{"confidence": s["confidence"]} for s in spans]})
    boxes = consolidate_boxes(given)
    value: dict[str, Any] = {"annotations": [
        {"class_id": spec.labels.index(b["label"]), "left": b["left"], "top": b["top"],
         "width": b["width"], "height": b["height"]} for b in boxes]}
    size = _image_size(source)
    if size is not None:
        value["image_size"] = [size]
    return value, {"objects": [{"confidence": b["confidence"]} for b in boxes],
                   "class-map": {str(i): label for i, label in enumerate(spec.labels)}}


def _image_size(path: str) -> dict[str, int] | None:
    """Width, height and depth (bands) of an image, when Pillow can read it."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return {"width": image.width, "height": image.height,
                    "depth": len(image.getbands())}
    except (ImportError, OSError):
        return None


def _to_feature_group(rows: Sequence[Any], labeled: dict[int, dict[str, Any]],
                      raw: list[dict[str, Any]], labels: list[str], job: str, method: str,
                      name: str, id_field: str | None, home: str | Path | None,
                      machine: dict[int, Any] | None = None) -> dict[str, Any]:
    """Each labeled item's label as a :class:`~loopworks.featurestore.LabelEvent` (from the
    job's workers, or from automated labeling's model)."""
    from loopworks.featurestore import (
        FeatureStore,
        LabelEvent,
        LabelSource,
        ingest_label_events,
    )

    if not id_field:
        raise ConfigurationError("labels into a feature group need --id-field: the manifest "
                                 "field that identifies each item (e.g. review_id)",
                                 setting="id_field")
    now = datetime.now(UTC)
    workers: dict[int, list[str]] = {}
    for a in raw:
        workers.setdefault(a["item_id"], []).append(str(a["worker"]))
    events = []
    machine = machine or {}
    for row in rows:
        rec, made = labeled.get(row.id), machine.get(row.id)
        if rec is None and made is None:
            continue
        data = json.loads(row.data)
        if data.get(id_field) in (None, ""):
            raise ConfigurationError(f"item {row.seq} has no {id_field!r} field",
                                     setting="id_field")
        if made is not None:  # a model's label: its confidence, no workers, the model
            events.append(LabelEvent(
                str(data[id_field]), now, made.label, labels.index(made.label),
                float(made.confidence), LabelSource.MODEL, job,
                method=f"auto-label {made.model_version}", model_version=made.model_version))
        elif rec is not None:
            events.append(LabelEvent(
                str(data[id_field]), now, rec["label"], labels.index(rec["label"]),
                float(rec["confidence"]), LabelSource.JOB, job,
                annotators=tuple(workers.get(row.id, ())), agreement=float(rec["agreement"]),
                method=method))
    if not events:
        return {"name": name, "records": 0}
    with FeatureStore(home=home) as store:
        written = ingest_label_events(
            store, name, events, record_id=id_field, event_time="labeled_at",
            description="Consolidated human labels with provenance (loopworks label)",
            tags={"source": "loopworks label"})
    return {"name": name, "records": written}
