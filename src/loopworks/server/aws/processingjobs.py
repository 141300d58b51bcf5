"""SageMaker Processing over the wire: CreateProcessingJob, DescribeProcessingJob,
ListProcessingJobs and StopProcessingJob, on :mod:`loopworks.processing.scripts`.

What ``SKLearnProcessor.run(code=..., inputs=..., outputs=..., arguments=...)`` sends runs
unchanged: each instance runs ContainerEntrypoint + ContainerArguments with its inputs under
``/opt/ml/processing``; the script's own boto3 calls reach this server (``AWS_ENDPOINT_URL``
and a key of the caller's, revoked when the job ends). ImageUri is recorded, never pulled:
the script runs in the server's Python, or in the virtual environment the job's Environment
names (``LW_PYTHON``); ``LW_ENGINE=ray`` runs the instances as Ray tasks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loopworks.errors import ConfigurationError, ConflictError, InputError, NotFoundError
from loopworks.processing.scripts import (
    JOB_NAME,
    ScriptInput,
    ScriptJob,
    ScriptJobSpec,
    ScriptOutput,
)
from loopworks.server.aws.featurestore import Call, Handler
from loopworks.server.aws.humanloop import named_param, require_admin, sagemaker_arn
from loopworks.server.aws.protocols import AwsError, page, required_string, with_token

__all__ = ["CONTROL_PLANE"]

_ENV_PYTHON, _ENV_ENGINE = "LW_PYTHON", "LW_ENGINE"


def _invalid(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def _inputs(given: Any) -> list[ScriptInput]:
    if given is None:
        return []
    if not isinstance(given, list):
        raise _invalid("ProcessingInputs must be a list")
    out = []
    for i, item in enumerate(given):
        where = f"ProcessingInputs[{i}]"
        s3 = item.get("S3Input") if isinstance(item, dict) else None
        if not isinstance(s3, dict):
            raise _invalid(f"{where}.S3Input is required (DatasetDefinition inputs are not "
                           "supported)")
        mode = s3.get("S3InputMode", "File")
        if mode != "File":
            raise _invalid(f"{where}.S3Input.S3InputMode {mode!r} is not supported: loopworks "
                           "downloads inputs before the script starts (File)")
        if s3.get("S3CompressionType", "None") != "None":
            raise _invalid(f"{where}.S3Input.S3CompressionType must be None")
        out.append(ScriptInput(
            str(item.get("InputName") or f"input-{i + 1}"), required_string(s3, "S3Uri"),
            required_string(s3, "LocalPath"), str(s3.get("S3DataType", "S3Prefix")),
            str(s3.get("S3DataDistributionType", "FullyReplicated"))))
    return out


def _outputs(config: Any) -> list[ScriptOutput]:
    if config is None:
        return []
    outputs = config.get("Outputs") if isinstance(config, dict) else None
    if not isinstance(outputs, list):
        raise _invalid("ProcessingOutputConfig.Outputs must be a list")
    out = []
    for i, item in enumerate(outputs):
        where = f"ProcessingOutputConfig.Outputs[{i}]"
        s3 = item.get("S3Output") if isinstance(item, dict) else None
        if not isinstance(s3, dict):
            raise _invalid(f"{where}.S3Output is required (FeatureStoreOutput: call "
                           "PutRecord from the script)")
        if s3.get("S3UploadMode", "EndOfJob") != "EndOfJob":
            raise _invalid(f"{where}.S3Output.S3UploadMode must be EndOfJob")
        destination = required_string(s3, "S3Uri")
        if not destination.startswith("s3://"):
            raise _invalid(f"{where}.S3Output.S3Uri {destination!r} is not an s3:// URI")
        out.append(ScriptOutput(str(item.get("OutputName") or f"output-{i + 1}"),
                                required_string(s3, "LocalPath"), destination))
    return out


def create_processing_job(call: Call) -> dict[str, Any]:
    """CreateProcessingJob: recorded at once (InProgress), run on the server's threads."""
    require_admin(call)
    p = call.params
    name = named_param(p, "ProcessingJobName", JOB_NAME)
    required_string(p, "RoleArn")
    app = p.get("AppSpecification")
    if not isinstance(app, dict):
        raise _invalid("AppSpecification is required")
    entrypoint = app.get("ContainerEntrypoint")
    if not isinstance(entrypoint, list) or not entrypoint:
        raise _invalid("AppSpecification.ContainerEntrypoint is required: loopworks runs no "
                       "images, so it must name the program (e.g. [\"python3\", "
                       "\"/opt/ml/processing/input/code/script.py\"])")
    cluster = (p.get("ProcessingResources") or {}).get("ClusterConfig")
    if not isinstance(cluster, dict):
        raise _invalid("ProcessingResources.ClusterConfig is required")
    environment = {str(k): str(v) for k, v in (p.get("Environment") or {}).items()}
    runtime = (p.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86_400)
    spec = ScriptJobSpec(
        name, [str(a) for a in entrypoint],
        [str(a) for a in app.get("ContainerArguments") or []], _inputs(p.get("ProcessingInputs")),
        _outputs(p.get("ProcessingOutputConfig")),
        instance_count=int(cluster.get("InstanceCount", 1)), environment=environment,
        max_runtime_seconds=int(runtime), image_uri=str(app.get("ImageUri", "")),
        python=environment.get(_ENV_PYTHON, ""),
        engine=environment.get(_ENV_ENGINE, "local"), owner=call.worker.name,
        request={k: v for k, v in p.items() if k != "Tags"} | {"Tags": p.get("Tags") or []})
    base = call.lw.settings.public_url or f"http://{call.host}"
    key_id, secret = call.lw.access_keys.issue(call.worker.name)
    env = {"AWS_ENDPOINT_URL": f"{base.rstrip('/')}/aws", "AWS_ACCESS_KEY_ID": key_id,
           "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": call.region,
           "AWS_REGION": call.region, "AWS_EC2_METADATA_DISABLED": "true"}
    access_keys, worker = call.lw.access_keys, call.worker.name

    def revoke(_: ScriptJob) -> None:  # the job's key ends with the job
        try:
            access_keys.revoke(worker, key_id)
        except NotFoundError:
            pass

    try:
        call.lw.processing_jobs.start(spec, env=env, on_end=revoke)
    except ConflictError:
        revoke(ScriptJob(spec))
        raise AwsError("ResourceInUse", f"Processing job {name} already exists.") from None
    except (ConfigurationError, InputError) as exc:
        revoke(ScriptJob(spec))
        raise _invalid(str(exc)) from None
    return {"ProcessingJobArn": sagemaker_arn(call, "processing-job", name.lower())}


def _epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _job(call: Call, name: str) -> ScriptJob:
    try:
        return call.lw.processing_jobs.get(name)
    except NotFoundError:
        raise AwsError("ResourceNotFound", f"Processing job {name} does not exist.") \
            from None


def _times(job: ScriptJob) -> dict[str, float]:
    out: dict[str, float] = {}
    for field, value in (("CreationTime", job.created_at), ("ProcessingStartTime",
                                                            job.started_at),
                         ("ProcessingEndTime", job.ended_at)):
        moment = _epoch(value)
        if moment is not None:
            out[field] = moment
    out["LastModifiedTime"] = max(out.values())
    return out


def describe_processing_job(call: Call) -> dict[str, Any]:
    """DescribeProcessingJob: the request as given, status, times, failure reason."""
    require_admin(call)
    name = required_string(call.params, "ProcessingJobName")
    job = _job(call, name)
    request = job.spec.request
    out: dict[str, Any] = {
        key: request[key] for key in (
            "ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources",
            "StoppingCondition", "AppSpecification", "Environment", "NetworkConfig",
            "RoleArn", "ExperimentConfig") if key in request}
    out.update({"ProcessingJobName": name,
                "ProcessingJobArn": sagemaker_arn(call, "processing-job", name.lower()),
                "ProcessingJobStatus": job.status, **_times(job)})
    if job.failure_reason:
        out["FailureReason"] = job.failure_reason
    if job.exit_codes:
        out["ExitMessage"] = ", ".join(f"{host}: exit {code}"
                                       for host, code in job.exit_codes.items())
    return out


def list_processing_jobs(call: Call) -> dict[str, Any]:
    """ListProcessingJobs: time windows, NameContains, StatusEquals, SortBy, paging."""
    require_admin(call)
    p = call.params
    status = p.get("StatusEquals")
    contains = str(p.get("NameContains") or "").lower()

    def within(job: ScriptJob) -> bool:
        times = _times(job)
        for field, key, after in (("CreationTimeAfter", "CreationTime", True),
                                  ("CreationTimeBefore", "CreationTime", False),
                                  ("LastModifiedTimeAfter", "LastModifiedTime", True),
                                  ("LastModifiedTimeBefore", "LastModifiedTime", False)):
            bound = p.get(field)
            if isinstance(bound, int | float) and not (
                    times[key] > bound if after else times[key] < bound):
                return False
        return True

    chosen = [j for j in call.lw.processing_jobs.list()
              if (status is None or j.status == status) and contains in j.spec.name.lower()
              and within(j)]
    sort_by = p.get("SortBy") or "CreationTime"
    keys = {"Name": lambda j: (j.spec.name,), "CreationTime": lambda j: (j.created_at,),
            "Status": lambda j: (j.status, j.spec.name)}
    if sort_by not in keys:
        raise _invalid("SortBy must be Name, CreationTime or Status")
    chosen.sort(key=keys[sort_by], reverse=(p.get("SortOrder") or "Descending")
                == "Descending")
    chunk, token = page(chosen, p)
    summaries = []
    for job in chunk:
        summary = {"ProcessingJobName": job.spec.name,
                   "ProcessingJobArn": sagemaker_arn(call, "processing-job",
                                                     job.spec.name.lower()),
                   "ProcessingJobStatus": job.status,
                   **{k: v for k, v in _times(job).items() if k != "ProcessingStartTime"}}
        if job.failure_reason:
            summary["FailureReason"] = job.failure_reason
        summaries.append(summary)
    return with_token({"ProcessingJobSummaries": summaries}, token)


def stop_processing_job(call: Call) -> dict[str, Any]:
    """StopProcessingJob: every instance is stopped (Stopping, then Stopped)."""
    require_admin(call)
    name = required_string(call.params, "ProcessingJobName")
    _job(call, name)
    try:
        call.lw.processing_jobs.stop(name)
    except ConflictError as exc:
        raise _invalid(str(exc)) from None
    return {}


CONTROL_PLANE: dict[str, Handler] = {
    "CreateProcessingJob": create_processing_job,
    "DescribeProcessingJob": describe_processing_job,
    "ListProcessingJobs": list_processing_jobs,
    "StopProcessingJob": stop_processing_job,
}
