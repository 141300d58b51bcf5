"""What a completed human loop produces: the reviewers' consolidated answer, the output
document in A2I's layout (``<output>/<flow>/YYYY/MM/DD/hh/mm/ss/<loop>/output.json``,
written atomically, local or object store) and the reviewed labels as
:class:`~loopworks.featurestore.LabelEvent` rows in the flow's feature group.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopworks.errors import InputError
from loopworks.labeling.tasktypes import TaskType, consolidate_spans
from loopworks.review.definitions import FlowDefinition

if TYPE_CHECKING:
    from loopworks.featurestore import FeatureStore
    from loopworks.objectstore import ObjectStore

__all__ = ["consolidate_review", "output_document", "write_output_document",
           "write_reviewed_labels"]


def consolidate_review(task_type: TaskType, given: list[Any], model_label: str
                       ) -> dict[str, Any]:
    """The reviewers' answer: majority vote for classification (ties go to the model's
    label when it is among the tied, else to the first answered); spans kept by majority."""
    if not given:
        return {"method": "none", "answers": 0}
    if task_type is TaskType.CUSTOM:  # a task UI's form: the answer most gave, as a whole
        keys = Counter(json.dumps(a, sort_keys=True) for a in given)
        top_key, top = keys.most_common(1)[0]
        chosen = next(a for a in given if json.dumps(a, sort_keys=True) == top_key)
        return {"method": "majority-answer", "answers": len(given), "answer": chosen,
                "agreement": round(top / len(given), 6)}
    if task_type is TaskType.NAMED_ENTITY_RECOGNITION:
        spans = consolidate_spans(given)
        return {"method": "span-majority", "answers": len(given), "entities": spans}
    votes = Counter(a for a in given if isinstance(a, str))
    top = max(votes.values())
    tied = [label for label in dict.fromkeys(given) if votes[label] == top]
    label = model_label if model_label in tied else tied[0]
    return {"method": "majority-vote", "answers": len(given), "label": label,
            "confidence": round(top / len(given), 6),
            "agreement": round(top / len(given), 6)}


def output_document(spec: FlowDefinition, loop: str, content: dict[str, Any],
                    given: list[dict[str, Any]], result: dict[str, Any],
                    conditions_fired: list[Any], created: datetime, completed: datetime
                    ) -> dict[str, Any]:
    """A completed loop's output document, with A2I's field names (and
    ``humanTaskActivationConditionResults`` when the flow has conditions); loopworks' own
    additions (the consolidated answer, the conditions that fired, the times) sit under
    ``loopworks``."""
    from loopworks.review.conditions import ActivationConditions

    document: dict[str, Any] = {
        "flowDefinitionArn": spec.arn, "humanLoopName": loop,
        "humanLoopArn": spec.loop_arn(loop), "inputContent": content, "humanAnswers": given}
    results = ActivationConditions(spec.activation_conditions).results(
        [c for c in conditions_fired if isinstance(c, str)])
    if results is not None:
        document["humanTaskActivationConditionResults"] = results
    document["loopworks"] = {
        "consolidatedAnswer": result, "activationConditionsFired": conditions_fired,
        "creationTime": created.isoformat(), "completionTime": completed.isoformat()}
    return document


def write_output_document(spec: FlowDefinition, loop: str, created: datetime,
                          document: dict[str, Any], objects: ObjectStore | None = None) -> str:
    """Write ``output.json`` under A2I's dated layout, atomically (local, remote, or in
    loopworks' object store for a flow whose ``output_store`` says so)."""
    from loopworks.files import atomic_write, is_local, local_path

    relative = f"{spec.name}/{created:%Y/%m/%d/%H/%M/%S}/{loop}/output.json"
    body = json.dumps(document, ensure_ascii=False, indent=2).encode()
    if spec.output_store == "objects":
        if objects is None:
            raise InputError("this flow writes to loopworks' object store, which this "
                             "process has not opened", field="output")
        bucket, _, prefix = spec.output.removeprefix("s3://").partition("/")
        key = f"{prefix.strip('/')}/{relative}" if prefix.strip("/") else relative
        objects.put_bytes(bucket, key, body, content_type="application/json")
        return f"s3://{bucket}/{key}"
    if is_local(spec.output):
        return atomic_write(local_path(spec.output) / relative, body)
    return atomic_write(f"{spec.output.rstrip('/')}/{relative}", body)


def write_reviewed_labels(store: FeatureStore, spec: FlowDefinition,
                      finished: list[dict[str, Any]], now: datetime) -> int:
    """Reviewed labels as time-stamped records with provenance: a training set can
    prefer them over the model's labels, and a later review is a newer event."""
    from loopworks.featurestore import LabelEvent, LabelSource, ingest_label_events

    events = []
    for f in finished:
        result = f["result"]
        if "label" not in result:
            continue  # span reviews have no single label to store
        ident = f["content"].get(spec.id_field) if spec.id_field else f["loop"]
        if ident in (None, ""):
            raise InputError(f"loop {f['loop']}: the input has no {spec.id_field!r} to key "
                             f"the feature group {spec.feature_group!r} by",
                             field=spec.id_field)
        events.append(LabelEvent(
            str(ident), now, result["label"], spec.labels.index(result["label"]),
            float(result["confidence"]), LabelSource.FLOW, spec.job_name,
            annotators=tuple(str(r) for r in f["reviewers"]),
            agreement=float(result["agreement"]), method=result["method"], flow=spec.name,
            human_loop=f["loop"], model_label=result["modelLabel"],
            model_confidence=float(result["modelConfidence"])))
    return ingest_label_events(
        store, spec.feature_group, events, record_id=spec.id_field or "human_loop",
        event_time="reviewed_at",
        description="Reviewed labels with provenance (loopworks review)",
        tags={"source": "loopworks review", "flow": spec.name})
