"""Ground Truth's object-store contract for labeling jobs: the input manifest and label
categories read from ``s3://`` URIs in loopworks' object store, pre-annotation hooks applied
to the items, and the outputs written where Ground Truth writes them::

    <S3OutputPath>/<job>/manifests/output/output.manifest
    <S3OutputPath>/<job>/annotations/worker-response/iteration-1/<n>/<time>.json
    <S3OutputPath>/<job>/annotations/consolidated-annotation/consolidation-request/iteration-1/<time>.json
    <S3OutputPath>/<job>/annotations/consolidated-annotation/consolidation-response/iteration-1/<time>.json

``<n>`` is the item's line in the input manifest from 0 (Ground Truth's datasetObjectId). A
worker response's ``answerContent`` is the crowd form as the worker sent it. The
consolidation request is what an annotation-consolidation hook reads; without one, loopworks'
own consolidation (:func:`~loopworks.labeling.output.output_records`) fills the response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from loopworks.errors import InputError, LoopworksError, NotFoundError
from loopworks.labeling.jobs import LabelingJobs
from loopworks.labeling.manifest import TASK_INPUT_FIELD
from loopworks.labeling.output import output_records
from loopworks.labeling.schema import items
from loopworks.labeling.tasktypes import TaskType

if TYPE_CHECKING:
    from loopworks.objectstore import ObjectStore

__all__ = ["MAX_MANIFEST_BYTES", "Hook", "apply_pre_hook", "export_job", "fail_lines",
           "human_answer", "read_label_categories", "read_s3_manifest", "split_s3_uri"]

#: The largest input manifest read (Ground Truth's limit is 100,000 objects per job).
MAX_MANIFEST_BYTES = 256 << 20
#: The largest text object a ``source-ref`` may name for a text task.
MAX_TEXT_OBJECT_BYTES = 1 << 20
#: A hook as the caller resolved it: the event in, the hook's JSON answer out (raises a
#: LoopworksError when it fails for good).
Hook = Callable[[dict[str, Any]], Any]


def split_s3_uri(uri: object, field: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; InputError naming the field otherwise."""
    if not isinstance(uri, str) or not uri.startswith("s3://") \
            or not uri[5:].partition("/")[0]:
        raise InputError(f"{field} {uri!r} is not an s3://bucket/key URI", field=field)
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _read(objects: ObjectStore, uri: str, field: str, limit: int) -> bytes:
    bucket, key = split_s3_uri(uri, field)
    try:
        info = objects.head(bucket, key)
    except NotFoundError:
        raise InputError(f"{field}: {uri} does not exist in loopworks' object store",
                         field=field) from None
    if info.size > limit:
        raise InputError(f"{field}: {uri} has {info.size:,} bytes; at most {limit:,}",
                         field=field)
    return b"".join(objects.read(info))


def read_label_categories(objects: ObjectStore, uri: str) -> tuple[list[str], str]:
    """The labels and instructions of a label category configuration file
    (``{"document-version": "2018-11-28", "labels": [{"label": ...}], "instructions":
    {"shortInstruction": ..., "fullInstruction": ...}}``)."""
    field = "LabelCategoryConfigS3Uri"
    try:
        document = json.loads(_read(objects, uri, field, 1 << 20))
    except ValueError as exc:
        raise InputError(f"{field}: {uri} is not JSON ({exc})", field=field) from None
    entries = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("label"), str) and e["label"]
            for e in entries):
        raise InputError(f"{field}: {uri} needs \"labels\": [{{\"label\": \"...\"}}, ...]",
                         field=field)
    told = document.get("instructions")
    parts = [told.get(k) for k in ("shortInstruction", "fullInstruction")] \
        if isinstance(told, dict) else []
    return [e["label"] for e in entries], "\n\n".join(p for p in parts if isinstance(p, str))


def read_s3_manifest(objects: ObjectStore, uri: str, task_type: TaskType
                     ) -> list[tuple[str, dict[str, Any]]]:
    """(source, fields) per line of an input manifest in the object store.

    ``source`` is a line's text; a ``source-ref`` names an ``s3://`` object: for a text task
    its text is read, for an image or custom task it is kept as the URI (the task template
    shows it through ``grant_read_access``) once it is known to exist.

    Raises:
        InputError: The manifest or an object it names is missing, or a line is not a JSON
            object with a usable ``source``/``source-ref``; names the URI and line.
    """
    body = _read(objects, uri, "InputConfig.DataSource.S3DataSource.ManifestS3Uri",
                 MAX_MANIFEST_BYTES)
    records = []
    for number, line in enumerate(body.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{uri}, line {number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{where}: invalid JSON ({exc})", file=uri, line=number) from None
        if not isinstance(record, dict):
            raise InputError(f"{where}: each line must be a JSON object", file=uri,
                             line=number)
        source, ref = record.get("source"), record.get("source-ref")
        if isinstance(ref, str) and ref.strip():
            if not ref.startswith("s3://"):
                raise InputError(f"{where}: source-ref {ref!r} must be an s3:// object",
                                 file=uri, line=number)
            if task_type.is_image or task_type is TaskType.CUSTOM:
                bucket, key = split_s3_uri(ref, "source-ref")
                try:
                    objects.head(bucket, key)
                except NotFoundError:
                    raise InputError(f"{where}: source-ref {ref} does not exist", file=uri,
                                     line=number) from None
                records.append((ref, record))
            else:
                text = _read(objects, ref, f"{where}: source-ref", MAX_TEXT_OBJECT_BYTES)
                records.append((text.decode("utf-8", "replace"), record))
        elif isinstance(source, str) and source.strip() and not task_type.is_image:
            records.append((source, record))
        else:
            need = "'source-ref' naming an image" if task_type.is_image else \
                "non-empty 'source' text or a 'source-ref'"
            raise InputError(f"{where}: needs a {need}", file=uri, line=number)
    if not records:
        raise InputError(f"{uri} holds no items", file=uri)
    return records


def apply_pre_hook(records: list[tuple[str, dict[str, Any]]], hook: Hook, job_arn: str, *,
                   threads: int = 8) -> dict[int, str]:
    """Call a pre-annotation hook on every item, as Ground Truth calls its Lambda function
    (``{"version": "2018-10-16", "labelingJobArn", "dataObject": <the manifest line>}``);
    each answer's ``taskInput`` becomes that item's ``task.input``.

    Returns:
        Why items are not for people, by position: the hook failed (after its retries) or
        answered ``isHumanAnnotationRequired: "false"``. The caller fails those items.
    """
    def one(record: dict[str, Any]) -> dict[str, Any] | str:
        try:
            answer = hook({"version": "2018-10-16", "labelingJobArn": job_arn,
                           "dataObject": record})
        except LoopworksError as exc:
            return str(exc)
        task_input = answer.get("taskInput") if isinstance(answer, dict) else None
        if not isinstance(task_input, dict):
            return ("the pre-annotation hook's answer has no taskInput object: "
                    f"{json.dumps(answer)[:200]}")
        if str(answer.get("isHumanAnnotationRequired", "true")).lower() == "false":
            return "the pre-annotation hook answered isHumanAnnotationRequired: false"
        return task_input

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="pre-hook") as pool:
        answers = list(pool.map(one, [data for _, data in records]))
    refused = {}
    for position, answer in enumerate(answers):
        if isinstance(answer, str):
            refused[position] = answer
        else:
            records[position][1][TASK_INPUT_FIELD] = answer
    return refused


def fail_lines(jobs: LabelingJobs, job: str, reasons: dict[int, str]) -> int:
    """Fail a job's items by manifest position (from 0) with their reasons."""
    if not reasons:
        return 0
    with jobs.engine.connect() as conn:
        job_id = jobs.job_row(conn, job).id
        ids = dict(conn.execute(sa.select(items.c.seq, items.c.id).where(
            items.c.job_id == job_id, items.c.seq.in_(list(reasons)))).all())
    by_reason: dict[str, list[int]] = {}
    for seq, reason in reasons.items():
        if seq in ids:
            by_reason.setdefault(reason, []).append(ids[seq])
    return sum(jobs.fail_items(job, found, reason) for reason, found in by_reason.items())


def human_answer(content: Any, worker: str | None, accepted: datetime, submitted: datetime
                 ) -> dict[str, Any]:
    """One person's answer as Ground Truth and A2I record it."""
    return {"answerContent": content, "workerId": worker,
            "workerMetadata": {"identityData": {"identityProviderType": "loopworks",
                                                "issuer": "loopworks", "sub": worker}},
            "acceptanceTime": accepted.isoformat(), "submissionTime": submitted.isoformat(),
            "timeSpentInSeconds": round((submitted - accepted).total_seconds(), 3)}


def _content(answer: dict[str, Any]) -> Any:
    """What the worker's form recorded (a built-in page's answer in the crowd elements'
    shape)."""
    if answer.get("form") is not None:
        return answer["form"]
    value = answer["answer"]
    if isinstance(value, str):
        return {"crowd-classifier": {"label": value}}
    if isinstance(value, list):
        return {"crowd-classifier-multi-select": {"labels": value}}
    return value


def export_job(jobs: LabelingJobs, objects: ObjectStore, job: str, output_path: str, *,
               job_arn: str, role_arn: str = "",
               consolidation: Hook | None = None) -> dict[str, Any]:
    """Write a job's outputs under ``<output_path>/<job>/`` in Ground Truth's layout (see
    the module). Safe to run again: every object is rewritten whole.

    With ``consolidation`` (an annotation-consolidation hook) its answer, per
    datasetObjectId, is the label content of each line; when it fails for good, every item
    with answers is marked failed in the manifest with the hook's error.

    Returns:
        ``{"manifest": <s3 URI of output.manifest>, "failed": <items failed>, "error":
        <the consolidation hook's error or None>}``.
    """
    bucket, prefix = split_s3_uri(output_path.rstrip("/") + "/", "OutputConfig.S3OutputPath")
    base = f"{prefix}{job}"
    built = output_records(jobs, job)
    attribute = built.spec.label_attribute
    now = datetime.now(UTC)
    stamp = f"{now:%Y-%m-%d_%H:%M:%S}"
    seq_of = {row.id: row.seq for row in built.rows}
    source_of = {row.seq: row.source for row in built.rows}
    per_item: dict[int, list[dict[str, Any]]] = {}
    for answer in built.answers:
        per_item.setdefault(seq_of[answer["item_id"]], []).append(answer)

    def put(key: str, document: Any) -> str:
        body = json.dumps(document, ensure_ascii=False, default=str).encode()
        objects.put_bytes(bucket, key, body, content_type="application/json")
        return f"s3://{bucket}/{key}"

    for seq, given in sorted(per_item.items()):
        last = max(a["submitted_at"] for a in given)
        put(f"{base}/annotations/worker-response/iteration-1/{seq}/{last:%Y-%m-%d_%H:%M:%S}"
            ".json", {"answers": [human_answer(_content(a), a["worker"], a["accepted_at"],
                                               a["submitted_at"]) for a in given]})
    request = [{"datasetObjectId": str(seq),
                "dataObject": {"s3Uri": built.records[seq]["source-ref"]}
                if isinstance(built.records[seq].get("source-ref"), str)
                else {"content": source_of[seq]},
                "annotations": [{"workerId": a["worker"], "annotationData": {
                    "content": json.dumps(_content(a), ensure_ascii=False)}} for a in given]}
               for seq, given in sorted(per_item.items())]
    consolidated = f"{base}/annotations/consolidated-annotation"
    request_uri = put(f"{consolidated}/consolidation-request/iteration-1/{stamp}.json",
                      request)
    error = None
    if consolidation is not None:
        try:
            response = _consolidate(consolidation, {
                "version": "2018-10-16", "labelingJobArn": job_arn,
                "labelCategories": built.spec.labels, "labelAttributeName": attribute,
                "roleArn": role_arn, "outputConfig": f"s3://{bucket}/{base}/annotations",
                "payload": {"s3Uri": request_uri, "content": request}}, set(per_item))
        except LoopworksError as exc:
            error, response = str(exc), []
        for seq in per_item:
            line = built.records[seq]
            line.pop(attribute, None)
            line.pop(f"{attribute}-metadata", None)
            if error is not None:
                line[f"{attribute}-metadata"] = {
                    "failure-reason": error, "job-name": f"labeling-job/{job}",
                    "human-annotated": "yes", "creation-date": now.isoformat()}
        for entry in response:
            built.records[int(entry["datasetObjectId"])].update(
                entry["consolidatedAnnotation"]["content"])
    else:
        response = [{"datasetObjectId": str(seq), "consolidatedAnnotation": {"content": {
            key: built.records[seq][key] for key in (attribute, f"{attribute}-metadata")
            if key in built.records[seq]}}} for seq in sorted(per_item)]
    put(f"{consolidated}/consolidation-response/iteration-1/{stamp}.json", response)
    manifest_key = f"{base}/manifests/output/output.manifest"
    objects.put_bytes(bucket, manifest_key, "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in built.records).encode(),
        content_type="application/jsonlines")
    failed = sum(1 for r in built.records
                 if "failure-reason" in (r.get(f"{attribute}-metadata") or {}))
    return {"manifest": f"s3://{bucket}/{manifest_key}", "failed": failed, "error": error}


def _consolidate(hook: Hook, event: dict[str, Any], wanted: set[int]
                 ) -> list[dict[str, Any]]:
    """The consolidation hook's answer, checked: a list of ``{"datasetObjectId",
    "consolidatedAnnotation": {"content": {...}}}`` naming items that have answers."""
    answer = hook(event)
    if not isinstance(answer, list):
        raise InputError("the annotation-consolidation hook must answer a list of "
                         f"{{datasetObjectId, consolidatedAnnotation}}; got "
                         f"{json.dumps(answer)[:200]}", field="consolidation")
    for i, entry in enumerate(answer):
        ok = isinstance(entry, dict) and str(entry.get("datasetObjectId", "")).isdigit() \
            and int(entry["datasetObjectId"]) in wanted and isinstance(
                (entry.get("consolidatedAnnotation") or {}).get("content"), dict)
        if not ok:
            raise InputError(f"the annotation-consolidation hook's answer [{i}] is not "
                             "{datasetObjectId of an answered item, consolidatedAnnotation: "
                             f"{{content: {{...}}}}}}: {json.dumps(entry)[:200]}",
                             field="consolidation")
    return answer
