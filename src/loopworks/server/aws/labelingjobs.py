"""Ground Truth labeling jobs over the wire: CreateLabelingJob, DescribeLabelingJob,
ListLabelingJobs, ListLabelingJobsForWorkteam and StopLabelingJob.

A job made here is a loopworks labeling job (:class:`~loopworks.labeling.JobSpec`) whose
page is the job's Liquid template (UiTemplateS3Uri or a HumanTaskUiArn), on the work team's
loopworks team, with the request kept beside it as given (DescribeLabelingJob echoes it).

* The built-in task types are named by Ground Truth's Lambda functions
  (``arn:aws:lambda:REGION:ACCOUNT:function:PRE-TextMultiClass`` ...): the PRE-/ACS- pair of
  each type maps to loopworks' type, whose answer is read from the template's crowd element.
* Any other function names a hook (``loopworks hooks add NAME``): a pre-annotation hook
  makes a custom job's ``task.input`` per item, a consolidation hook its labels.
* Inputs and outputs live in loopworks' object store at the S3 URIs given; outputs are
  written in Ground Truth's layout (:mod:`loopworks.labeling.groundtruth`) once the job has
  ended, before the first DescribeLabelingJob or ListLabelingJobs that sees it ended answers.
* StoppingConditions stop the job when a describe or list finds them reached;
  MaxConcurrentTaskCount caps the items in flight at once.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from loopworks.errors import ConfigurationError, ConflictError, InputError, NotFoundError
from loopworks.labeling.groundtruth import (
    apply_pre_hook,
    export_job,
    fail_lines,
    read_label_categories,
    read_s3_manifest,
    split_s3_uri,
)
from loopworks.labeling.hooks import Hooks, hook_name_of_arn
from loopworks.labeling.jobs import JobSpec, JobStatus, TaskType
from loopworks.labeling.resources import Resource, Resources
from loopworks.metadata.locks import exclusive
from loopworks.server.aws.featurestore import Call, Handler
from loopworks.server.aws.humanloop import (
    S3_PATH,
    TASK_UI_KIND,
    WORKTEAM_KIND,
    arn_name,
    epoch,
    get_resource,
    named_param,
    not_found,
    require_admin,
    sagemaker_arn,
)
from loopworks.server.aws.protocols import AwsError, page, required_string, with_token

__all__ = ["BUILT_IN_TASK_TYPES", "CONTROL_PLANE"]

_KIND = "labeling-job"
_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_ATTRIBUTE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}")
#: Ground Truth's built-in task types (the name after PRE- and ACS-) that loopworks has.
BUILT_IN_TASK_TYPES = {
    "TextMultiClass": TaskType.TEXT_CLASSIFICATION,
    "TextMultiClassMultiLabel": TaskType.TEXT_CLASSIFICATION_MULTILABEL,
    "NamedEntityRecognition": TaskType.NAMED_ENTITY_RECOGNITION,
    "ImageMultiClass": TaskType.IMAGE_CLASSIFICATION,
    "BoundingBox": TaskType.BOUNDING_BOX,
}
_ENDED = (JobStatus.COMPLETED, JobStatus.STOPPED, JobStatus.FAILED)


def _invalid(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def _function(call: Call, arn: Any, field: str) -> tuple[str, TaskType | None]:
    """(hook name, None) for a hook, or (built-in name, its task type) for a PRE-/ACS-
    function of Ground Truth's."""
    name = hook_name_of_arn(arn) if isinstance(arn, str) else None
    if name is None:
        raise _invalid(f"{field} {arn!r} is not a Lambda function ARN "
                       "(arn:aws:lambda:REGION:ACCOUNT:function:NAME)")
    prefix, _, built_in = name.partition("-")
    if prefix in ("PRE", "ACS") and built_in:
        if built_in not in BUILT_IN_TASK_TYPES:
            raise _invalid(f"{field}: the built-in task type {built_in} is not supported; "
                           f"loopworks has {', '.join(BUILT_IN_TASK_TYPES)} (or register a "
                           "hook for a custom workflow)")
        return built_in, BUILT_IN_TASK_TYPES[built_in]
    try:
        Hooks(call.lw.engine).get(name)
    except NotFoundError:
        raise _invalid(f"{field}: no hook named {name!r}; register it on the server with "
                       f"`loopworks hooks add {name} --python module:function` or "
                       "`--url https://...`") from None
    return name, None


def _whole(config: dict[str, Any], field: str, default: int | None = None) -> int:
    value = config.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"HumanTaskConfig.{field} must be a whole number")
    return value


def _template(call: Call, ui: Any) -> str:
    if not isinstance(ui, dict) or ("UiTemplateS3Uri" in ui) == ("HumanTaskUiArn" in ui):
        raise _invalid("HumanTaskConfig.UiConfig needs exactly one of UiTemplateS3Uri and "
                       "HumanTaskUiArn")
    if "HumanTaskUiArn" in ui:
        name = arn_name(ui["HumanTaskUiArn"], "human-task-ui", "UiConfig.HumanTaskUiArn")
        return str(get_resource(call, TASK_UI_KIND, "HumanTaskUi", name).document["content"])
    uri = ui["UiTemplateS3Uri"]
    bucket, key = split_s3_uri(uri, "UiConfig.UiTemplateS3Uri")
    try:
        info = call.lw.objects.head(bucket, key)
    except NotFoundError:
        raise _invalid(f"UiConfig.UiTemplateS3Uri: {uri} does not exist") from None
    if info.size > 512_000:
        raise _invalid(f"UiConfig.UiTemplateS3Uri: {uri} has {info.size:,} bytes; a "
                       "template may have 512,000")
    return b"".join(call.lw.objects.read(info)).decode("utf-8", "replace")


def create_labeling_job(call: Call) -> dict[str, Any]:
    """CreateLabelingJob: the items of the manifest, each for NumberOfHumanWorkersPerDataObject
    people of the work team, on the job's template."""
    require_admin(call)
    p = call.params
    name = named_param(p, "LabelingJobName", _JOB_NAME)
    attribute = named_param(p, "LabelAttributeName", _ATTRIBUTE)
    required_string(p, "RoleArn")
    source = ((p.get("InputConfig") or {}).get("DataSource") or {})
    manifest = (source.get("S3DataSource") or {}).get("ManifestS3Uri")
    if not isinstance(manifest, str):
        raise _invalid("InputConfig.DataSource.S3DataSource.ManifestS3Uri is required "
                       "(streaming jobs with an SnsDataSource are not supported)")
    output = (p.get("OutputConfig") or {}).get("S3OutputPath")
    found = S3_PATH.fullmatch(output) if isinstance(output, str) else None
    if found is None or not isinstance(output, str):
        raise _invalid(f"OutputConfig.S3OutputPath {output!r} is not an s3://bucket/prefix "
                       "URI")
    config = p.get("HumanTaskConfig")
    if not isinstance(config, dict):
        raise _invalid("HumanTaskConfig is required")
    for field in ("TaskTitle", "TaskDescription"):
        if not isinstance(config.get(field), str) or not config[field]:
            raise _invalid(f"HumanTaskConfig.{field} is required")
    pre, task_type = _function(call, config.get("PreHumanTaskLambdaArn"),
                               "HumanTaskConfig.PreHumanTaskLambdaArn")
    consolidation = (config.get("AnnotationConsolidationConfig") or {}).get(
        "AnnotationConsolidationLambdaArn")
    post, post_type = _function(call, consolidation, "HumanTaskConfig."
                                "AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn")
    if task_type is not None and post_type not in (None, task_type):
        raise _invalid(f"the consolidation function ACS-{post} does not go with PRE-{pre}")
    workteam = get_resource(call, WORKTEAM_KIND, "Workteam", arn_name(
        config.get("WorkteamArn"), "workteam", "HumanTaskConfig.WorkteamArn"))
    template = _template(call, config.get("UiConfig"))
    labels: list[str] = []
    instructions = ""
    categories = p.get("LabelCategoryConfigS3Uri")
    if categories is not None:
        labels, instructions = read_label_categories(call.lw.objects, str(categories))
    elif task_type is not None:
        raise _invalid(f"LabelCategoryConfigS3Uri is required for the built-in task type "
                       f"{pre}")
    auto_label = None
    if p.get("LabelingJobAlgorithmsConfig") is not None:
        auto_label = {}
        budget = (p.get("StoppingConditions") or {}).get("MaxHumanLabeledObjectCount")
        if isinstance(budget, int) and not isinstance(budget, bool):
            auto_label["budget"] = budget
    try:
        spec = JobSpec(
            name, workteam.document["teams"][0], labels,
            task_type if task_type is not None else TaskType.CUSTOM,
            instructions=instructions or str(config["TaskDescription"]),
            workers_per_item=_whole(config, "NumberOfHumanWorkersPerDataObject"),
            time_limit_seconds=_whole(config, "TaskTimeLimitInSeconds"),
            availability_lifetime_seconds=_whole(config, "TaskAvailabilityLifetimeInSeconds",
                                                 864_000),
            label_attribute=attribute, auto_label=auto_label, template=template,
            max_concurrent_items=config.get("MaxConcurrentTaskCount"))
        records = read_s3_manifest(call.lw.objects, manifest, spec.task_type)
    except (ConfigurationError, InputError) as exc:
        raise _invalid(str(exc)) from None
    arn = sagemaker_arn(call, "labeling-job", name.lower())
    refused: dict[int, str] = {}
    if task_type is None:
        hooks = Hooks(call.lw.engine)
        refused = apply_pre_hook(records, lambda event: hooks.invoke(pre, event), arn)
    try:
        call.lw.objects.create_bucket(found["bucket"], owner_id=call.worker.id)
    except ConflictError:
        pass
    document: dict[str, Any] = {key: p[key] for key in (
        "LabelAttributeName", "InputConfig", "OutputConfig", "RoleArn",
        "LabelCategoryConfigS3Uri", "StoppingConditions", "LabelingJobAlgorithmsConfig",
        "HumanTaskConfig", "Tags") if key in p}
    document["workteam"] = workteam.name
    try:
        Resources(call.lw.engine).create(_KIND, name, document)
    except ConflictError:
        raise AwsError("ResourceInUse", f"Labeling job {name} already exists.") from None
    try:
        call.lw.labeling.create_job(spec, records)
    except BaseException as exc:
        Resources(call.lw.engine).delete(_KIND, name)
        if isinstance(exc, ConflictError):
            raise AwsError("ResourceInUse", f"A loopworks labeling job named {name} exists "
                           "already.") from None
        if isinstance(exc, ConfigurationError | InputError):
            raise _invalid(str(exc)) from None
        raise
    fail_lines(call.lw.labeling, name, refused)
    return {"LabelingJobArn": arn}


def _job(call: Call, name: str) -> tuple[Resource, JobSpec]:
    """The job's request and its loopworks job (settled), with stopping conditions applied
    and, once it has ended, its outputs written."""
    resource = get_resource(call, _KIND, "LabelingJob", name)
    try:
        spec = call.lw.labeling.job(name)
    except NotFoundError:
        raise not_found("LabelingJob", name) from None
    if spec.status is JobStatus.IN_PROGRESS and _stop_reached(resource, spec):
        try:
            call.lw.labeling.stop(name)
        except ConflictError:
            pass
        spec = call.lw.labeling.job(name)
    if spec.status in _ENDED and "exported" not in resource.document:
        resource = _export(call, resource)
    return resource, spec


def _stop_reached(resource: Resource, spec: JobSpec) -> bool:
    conditions = resource.document.get("StoppingConditions") or {}
    most = conditions.get("MaxHumanLabeledObjectCount")
    share = conditions.get("MaxPercentageOfInputDatasetLabeled")
    counts = spec.counts
    if isinstance(most, int) and spec.auto_label is None \
            and counts.get("human-labeled", 0) >= most:
        return True
    return isinstance(share, int | float) and counts.get("items") and \
        100 * counts.get("total", 0) / counts["items"] >= share or False


def _export(call: Call, resource: Resource) -> Resource:
    """Write the outputs once: one writer per job at a time across every server process
    sharing the database (a lock of the database's), and none after the first."""
    with exclusive(call.lw.engine, f"labeling-job-export:{resource.name}", timeout=300):
        current = Resources(call.lw.engine).get(_KIND, resource.name)
        if "exported" in current.document:
            return current
        config = current.document["HumanTaskConfig"]
        arn = (config.get("AnnotationConsolidationConfig") or {}).get(
            "AnnotationConsolidationLambdaArn")
        name = hook_name_of_arn(arn) if isinstance(arn, str) else None
        consolidation = None
        if name and not name.startswith("ACS-"):
            hooks = Hooks(call.lw.engine)
            def consolidation(event: dict[str, Any]) -> Any:
                return hooks.invoke(name, event)
        result = export_job(call.lw.labeling, call.lw.objects, resource.name,
                            current.document["OutputConfig"]["S3OutputPath"],
                            job_arn=sagemaker_arn(call, "labeling-job", resource.name.lower()),
                            role_arn=current.document.get("RoleArn", ""),
                            consolidation=consolidation)
        return Resources(call.lw.engine).update(_KIND, resource.name,
                                                {**current.document, "exported": result})


def _counters(spec: JobSpec, resource: Resource) -> dict[str, int]:
    counts = spec.counts
    failed = (resource.document.get("exported") or {}).get("failed", counts.get("failed", 0))
    return {"TotalLabeled": counts.get("total", 0) - max(0, failed - counts.get("failed", 0)),
            "HumanLabeled": counts.get("human-labeled", 0),
            "MachineLabeled": counts.get("machine-labeled", 0),
            "FailedNonRetryableError": failed, "Unlabeled": counts.get("unlabeled", 0)}


def _output(resource: Resource) -> dict[str, Any] | None:
    exported = resource.document.get("exported")
    return {"OutputDatasetS3Uri": exported["manifest"]} if exported else None


def describe_labeling_job(call: Call) -> dict[str, Any]:
    """DescribeLabelingJob: status, counters, the request as given, and the output manifest
    once the job has ended."""
    require_admin(call)
    name = required_string(call.params, "LabelingJobName")
    resource, spec = _job(call, name)
    doc = resource.document
    out: dict[str, Any] = {
        "LabelingJobStatus": spec.status.value, "LabelCounters": _counters(spec, resource),
        "CreationTime": epoch(resource.created_at),
        "LastModifiedTime": epoch(resource.updated_at),
        "JobReferenceCode": _reference(call, name), "LabelingJobName": name,
        "LabelingJobArn": sagemaker_arn(call, "labeling-job", name.lower()),
        **{k: v for k, v in doc.items() if k[:1].isupper()}}
    reason = spec.failure_reason or (doc.get("exported") or {}).get("error")
    if reason:
        out["FailureReason"] = reason
    if _output(resource):
        out["LabelingJobOutput"] = _output(resource)
    return out


def _reference(call: Call, name: str) -> str:
    return f"{call.lw.settings.aws_account_id}-{name.lower()}"


def _summary(call: Call, resource: Resource, spec: JobSpec) -> dict[str, Any]:
    config = resource.document["HumanTaskConfig"]
    out: dict[str, Any] = {
        "LabelingJobName": resource.name,
        "LabelingJobArn": sagemaker_arn(call, "labeling-job", resource.name.lower()),
        "CreationTime": epoch(resource.created_at),
        "LastModifiedTime": epoch(resource.updated_at),
        "LabelingJobStatus": spec.status.value, "LabelCounters": _counters(spec, resource),
        "WorkteamArn": config["WorkteamArn"],
        "PreHumanTaskLambdaArn": config["PreHumanTaskLambdaArn"],
        "AnnotationConsolidationLambdaArn": config["AnnotationConsolidationConfig"][
            "AnnotationConsolidationLambdaArn"],
        "InputConfig": resource.document["InputConfig"]}
    if spec.failure_reason:
        out["FailureReason"] = spec.failure_reason
    if _output(resource):
        out["LabelingJobOutput"] = _output(resource)
    return out


def _jobs(call: Call) -> list[tuple[Resource, JobSpec]]:
    found = []
    for resource in Resources(call.lw.engine).list(_KIND):
        try:
            found.append(_job(call, resource.name))
        except AwsError:  # its loopworks job was deleted meanwhile
            continue
    return found


def _window(value: Any, moment: datetime, after: bool) -> bool:
    if not isinstance(value, int | float):
        return True
    return epoch(moment) > value if after else epoch(moment) < value


def list_labeling_jobs(call: Call) -> dict[str, Any]:
    """ListLabelingJobs: time windows, NameContains, StatusEquals, SortBy Name, CreationTime
    or Status, SortOrder, paging."""
    require_admin(call)
    p = call.params
    status = p.get("StatusEquals")
    contains = str(p.get("NameContains") or "").lower()
    chosen = [(r, s) for r, s in _jobs(call)
              if (status is None or s.status.value == status) and contains in r.name.lower()
              and _window(p.get("CreationTimeAfter"), r.created_at, True)
              and _window(p.get("CreationTimeBefore"), r.created_at, False)
              and _window(p.get("LastModifiedTimeAfter"), r.updated_at, True)
              and _window(p.get("LastModifiedTimeBefore"), r.updated_at, False)]
    sort_by = p.get("SortBy") or "CreationTime"
    keys = {"Name": lambda rs: (rs[0].name,),
            "CreationTime": lambda rs: (rs[0].created_at, rs[0].name),
            "Status": lambda rs: (rs[1].status.value, rs[0].name)}
    if sort_by not in keys:
        raise _invalid("SortBy must be Name, CreationTime or Status")
    if (p.get("SortOrder") or "Ascending") not in ("Ascending", "Descending"):
        raise _invalid("SortOrder must be Ascending or Descending")
    chosen.sort(key=keys[sort_by], reverse=p.get("SortOrder") == "Descending")
    chunk, token = page(chosen, p)
    return with_token({"LabelingJobSummaryList": [_summary(call, r, s) for r, s in chunk]}, token)


def list_labeling_jobs_for_workteam(call: Call) -> dict[str, Any]:
    """ListLabelingJobsForWorkteam: the jobs a work team works on, as its people see them."""
    require_admin(call)
    p = call.params
    team = arn_name(p.get("WorkteamArn"), "workteam", "WorkteamArn")
    get_resource(call, WORKTEAM_KIND, "Workteam", team)
    contains = str(p.get("JobReferenceCodeContains") or "")
    chosen = [(r, s) for r, s in _jobs(call)
              if r.document.get("workteam") == team
              and contains in _reference(call, r.name)
              and _window(p.get("CreationTimeAfter"), r.created_at, True)
              and _window(p.get("CreationTimeBefore"), r.created_at, False)]
    if (p.get("SortBy") or "CreationTime") != "CreationTime":
        raise _invalid("SortBy must be CreationTime")
    chosen.sort(key=lambda rs: (rs[0].created_at, rs[0].name),
                reverse=p.get("SortOrder") == "Descending")
    chunk, token = page(chosen, p)
    return with_token({"LabelingJobSummaryList": [{
        "LabelingJobName": r.name, "JobReferenceCode": _reference(call, r.name),
        "WorkRequesterAccountId": call.lw.settings.aws_account_id,
        "CreationTime": epoch(r.created_at),
        "LabelCounters": {"HumanLabeled": s.counts.get("human-labeled", 0),
                          "PendingHuman": s.counts.get("unlabeled", 0),
                          "Total": s.counts.get("items", 0)},
        "NumberOfHumanWorkersPerDataObject": s.workers_per_item} for r, s in chunk]}, token)


def stop_labeling_job(call: Call) -> dict[str, Any]:
    """StopLabelingJob: no more tasks; answers so far are kept and written out."""
    require_admin(call)
    name = required_string(call.params, "LabelingJobName")
    get_resource(call, _KIND, "LabelingJob", name)
    try:
        call.lw.labeling.stop(name)
    except ConflictError as exc:
        raise _invalid(str(exc)) from None
    except NotFoundError:
        raise not_found("LabelingJob", name) from None
    return {}


CONTROL_PLANE: dict[str, Handler] = {
    "CreateLabelingJob": create_labeling_job, "DescribeLabelingJob": describe_labeling_job,
    "ListLabelingJobs": list_labeling_jobs,
    "ListLabelingJobsForWorkteam": list_labeling_jobs_for_workteam,
    "StopLabelingJob": stop_labeling_job,
}
