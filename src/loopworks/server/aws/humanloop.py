"""SageMaker's human-in-the-loop control plane over the wire: the private workforce, work
teams and human task UIs (what Ground Truth labeling jobs and Augmented AI flows name).

* The workforce is the server's people: one private workforce, ``default``, whose SubDomain
  is the address people sign in at (the ``public_url`` setting, else the request's host).
* A work team's MemberDefinitions name loopworks teams: a Cognito ``UserGroup`` or each of
  the OIDC ``Groups`` is the team whose members work for it (created when missing). The rest
  of the definition (description, notifications, access) is kept as given.
* A human task UI is a Liquid template with crowd-html elements; it is parsed when given, so
  one that does not parse is refused naming its line and column.

Only admins manage these (as labeling jobs and review flows on the JSON API).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from loopworks.errors import (
    ConfigurationError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from loopworks.featurestore.batching import RecordBatcher
from loopworks.labeling.resources import Resource, Resources
from loopworks.labeling.templates import check_template
from loopworks.labeling.workforce import Role
from loopworks.server.aws.featurestore import Call, Handler
from loopworks.server.aws.protocols import AwsError, page, required_string, with_token

__all__ = ["A2I_RUNTIME", "CONTROL_PLANE", "S3_PATH", "TASK_UI_KIND", "WORKTEAM_KIND",
           "arn_name", "created_page", "epoch", "get_resource", "named_param", "not_found",
           "require_admin", "sagemaker_arn", "sorted_page"]

WORKFORCE = "default"
WORKTEAM_KIND, TASK_UI_KIND = "workteam", "human-task-ui"
_WORKTEAM_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_TASK_UI_NAME = re.compile(r"[a-z0-9](-*[a-z0-9]){0,62}")
_TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def require_admin(call: Call) -> None:
    if call.worker.role is not Role.ADMIN:
        raise PermissionDenied(f"worker {call.worker.name!r} ({call.worker.role.value}) may "
                               "not manage workforces, work teams or task UIs",
                               worker=call.worker.name)


def sagemaker_arn(call: Call, kind: str, name: str) -> str:
    return (f"arn:aws:sagemaker:{call.region}:{call.lw.settings.aws_account_id}:"
            f"{kind}/{name}")


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def _resources(call: Call) -> Resources:
    return Resources(call.lw.engine)


def not_found(kind: str, name: str) -> AwsError:
    return AwsError("ResourceNotFound", f"{kind} {name} does not exist.")


def named_param(params: dict[str, Any], field: str, pattern: re.Pattern[str]) -> str:
    name = required_string(params, field)
    if not pattern.fullmatch(name):
        raise AwsError("ValidationException", f"1 validation error detected: Value "
                       f"'{name}' at '{field[0].lower() + field[1:]}' failed to satisfy "
                       f"constraint: Member must satisfy regular expression pattern: "
                       f"{pattern.pattern}")
    return name


def sorted_page(items: list[Resource], params: dict[str, Any], *, key_field: str,
                 default_sort: str = "CreationTime") -> tuple[list[Resource], str | None]:
    sort_by = params.get("SortBy") or default_sort
    order = params.get("SortOrder") or "Ascending"
    if order not in ("Ascending", "Descending"):
        raise AwsError("ValidationException", "SortOrder must be Ascending or Descending")
    if sort_by == "Name":
        items = sorted(items, key=lambda r: r.name)
    elif sort_by in ("CreateDate", "CreationTime"):
        items = sorted(items, key=lambda r: (r.created_at, r.name))
    else:
        raise AwsError("ValidationException", f"SortBy must be Name or {default_sort}")
    if order == "Descending":
        items.reverse()
    contains = params.get(key_field)
    if isinstance(contains, str) and contains:
        items = [r for r in items if contains.lower() in r.name.lower()]
    return page(items, params)


def created_page(call: Call, kind: str) -> tuple[list[Resource], str | None]:
    """A page of a kind's resources in a CreationTimeAfter/Before window, by creation time
    (SortOrder), as SageMaker's List* calls without SortBy take them."""
    p = call.params
    items = _resources(call).list(kind)
    after, before = p.get("CreationTimeAfter"), p.get("CreationTimeBefore")
    if isinstance(after, (int, float)):
        items = [r for r in items if epoch(r.created_at) > after]
    if isinstance(before, (int, float)):
        items = [r for r in items if epoch(r.created_at) < before]
    return sorted_page(items, {**p, "SortBy": "CreationTime"}, key_field="")


# ------------------------------------------------------------------- workforce
def _subdomain(call: Call) -> str:
    public = call.lw.settings.public_url
    return urlsplit(public).netloc if public else call.host


def _workforce(call: Call) -> dict[str, Any]:
    return {"WorkforceName": WORKFORCE, "WorkforceArn": sagemaker_arn(call, "workforce", WORKFORCE),
            "SubDomain": _subdomain(call), "Status": "Active",
            "SourceIpConfig": {"Cidrs": []}}


def describe_workforce(call: Call) -> dict[str, Any]:
    """DescribeWorkforce: the one private workforce."""
    require_admin(call)
    name = required_string(call.params, "WorkforceName")
    if name != WORKFORCE:
        raise not_found("Workforce", name)
    return {"Workforce": _workforce(call)}


def list_workforces(call: Call) -> dict[str, Any]:
    """ListWorkforces: the one private workforce (NameContains filters it)."""
    require_admin(call)
    contains = call.params.get("NameContains")
    found = [] if isinstance(contains, str) and contains not in WORKFORCE \
        else [_workforce(call)]
    return {"Workforces": found}


# ------------------------------------------------------------------ work teams
def _teams_of(definitions: Any) -> list[str]:
    """The loopworks teams a work team's MemberDefinitions name."""
    if not isinstance(definitions, list) or not 1 <= len(definitions) <= 10:
        raise AwsError("ValidationException", "MemberDefinitions must list 1 to 10 members")
    kinds = {next(iter(d), "") for d in definitions if isinstance(d, dict)}
    if len(kinds) != 1 or not kinds <= {"CognitoMemberDefinition", "OidcMemberDefinition"}:
        raise AwsError("ValidationException", "MemberDefinitions must all be "
                       "CognitoMemberDefinition or all OidcMemberDefinition")
    names: list[str] = []
    for definition in definitions:
        if "CognitoMemberDefinition" in definition:
            group = definition["CognitoMemberDefinition"].get("UserGroup")
            names += [group] if isinstance(group, str) else []
        else:
            groups = definition["OidcMemberDefinition"].get("Groups")
            names += [g for g in groups if isinstance(g, str)] if isinstance(groups, list) \
                else []
    for name in names:
        if not _TEAM_NAME.fullmatch(name):
            raise AwsError("ValidationException", f"{name!r} cannot name a loopworks team "
                           "(letters, digits, '_', '.' and '-', at most 63)")
    if not names:
        raise AwsError("ValidationException", "MemberDefinitions name no group")
    return sorted(set(names))


def _ensure_teams(call: Call, names: list[str]) -> None:
    known = {t.name for t in call.lw.workforce.teams()}
    for name in names:
        if name not in known:
            try:
                call.lw.workforce.add_team(name, "made for a SageMaker work team")
            except ConflictError:  # made meanwhile
                pass


def _workteam(call: Call, resource: Resource) -> dict[str, Any]:
    doc = resource.document
    out: dict[str, Any] = {
        "WorkteamName": resource.name, "MemberDefinitions": doc["MemberDefinitions"],
        "WorkteamArn": sagemaker_arn(call, "workteam/private-crowd", resource.name),
        "WorkforceArn": sagemaker_arn(call, "workforce", WORKFORCE), "ProductListingIds": [],
        "Description": doc["Description"], "SubDomain": _subdomain(call),
        "CreateDate": epoch(resource.created_at),
        "LastUpdatedDate": epoch(resource.updated_at)}
    for optional in ("NotificationConfiguration", "WorkerAccessConfiguration"):
        if doc.get(optional):
            out[optional] = doc[optional]
    return out


def create_workteam(call: Call) -> dict[str, Any]:
    """CreateWorkteam: its member groups become (or are) loopworks teams."""
    require_admin(call)
    p = call.params
    name = named_param(p, "WorkteamName", _WORKTEAM_NAME)
    description = required_string(p, "Description")
    if p.get("WorkforceName") not in (None, WORKFORCE):
        raise not_found("Workforce", str(p["WorkforceName"]))
    teams = _teams_of(p.get("MemberDefinitions"))
    document = {"MemberDefinitions": p["MemberDefinitions"], "Description": description,
                "NotificationConfiguration": p.get("NotificationConfiguration"),
                "WorkerAccessConfiguration": p.get("WorkerAccessConfiguration"),
                "teams": teams, "tags": p.get("Tags") or []}
    try:
        _resources(call).create(WORKTEAM_KIND, name, document)
    except ConflictError:
        raise AwsError("ResourceInUse", f"Workteam {name} already exists.") from None
    _ensure_teams(call, teams)
    return {"WorkteamArn": sagemaker_arn(call, "workteam/private-crowd", name)}


def get_resource(call: Call, kind: str, label: str, name: str) -> Resource:
    try:
        return _resources(call).get(kind, name)
    except NotFoundError:
        raise not_found(label, name) from None


def describe_workteam(call: Call) -> dict[str, Any]:
    """DescribeWorkteam."""
    require_admin(call)
    name = required_string(call.params, "WorkteamName")
    return {"Workteam": _workteam(call, get_resource(call, WORKTEAM_KIND, "Workteam", name))}


def list_workteams(call: Call) -> dict[str, Any]:
    """ListWorkteams: sorted by Name (default) or CreateDate, NameContains, paging."""
    require_admin(call)
    chunk, token = sorted_page(_resources(call).list(WORKTEAM_KIND), call.params,
                                key_field="NameContains", default_sort="Name")
    return with_token({"Workteams": [_workteam(call, r) for r in chunk]}, token)


def update_workteam(call: Call) -> dict[str, Any]:
    """UpdateWorkteam: members, description, notifications, access."""
    require_admin(call)
    p = call.params
    name = required_string(p, "WorkteamName")
    current = get_resource(call, WORKTEAM_KIND, "Workteam", name)
    document = dict(current.document)
    if "MemberDefinitions" in p:
        document["teams"] = _teams_of(p["MemberDefinitions"])
        document["MemberDefinitions"] = p["MemberDefinitions"]
    for field in ("Description", "NotificationConfiguration", "WorkerAccessConfiguration"):
        if field in p:
            document[field] = p[field]
    updated = _resources(call).update(WORKTEAM_KIND, name, document)
    _ensure_teams(call, document["teams"])
    return {"Workteam": _workteam(call, updated)}


def _delete(call: Call, kind: str, label: str, field: str) -> None:
    """Delete the resource a request names (ResourceNotFound when there is none)."""
    require_admin(call)
    name = required_string(call.params, field)
    try:
        _resources(call).delete(kind, name)
    except NotFoundError:
        raise not_found(label, name) from None


def delete_workteam(call: Call) -> dict[str, Any]:
    """DeleteWorkteam: the work team goes; its loopworks teams and people stay."""
    _delete(call, WORKTEAM_KIND, "Workteam", "WorkteamName")
    return {"Success": True}


# ------------------------------------------------------------------- task UIs
def create_human_task_ui(call: Call) -> dict[str, Any]:
    """CreateHumanTaskUi: a Liquid template, parsed now (line and column when it fails)."""
    require_admin(call)
    p = call.params
    name = named_param(p, "HumanTaskUiName", _TASK_UI_NAME)
    template = p.get("UiTemplate")
    content = template.get("Content") if isinstance(template, dict) else None
    if not isinstance(content, str):
        raise AwsError("ValidationException", "UiTemplate.Content must be the template")
    try:
        check_template(content, name="UiTemplate.Content")
    except ValidationError as exc:
        raise AwsError("ValidationException", str(exc)) from None
    try:
        _resources(call).create(TASK_UI_KIND, name, {"content": content,
                                                 "tags": p.get("Tags") or []})
    except ConflictError:
        raise AwsError("ResourceInUse", f"HumanTaskUi {name} already exists.") from None
    return {"HumanTaskUiArn": sagemaker_arn(call, "human-task-ui", name)}


def describe_human_task_ui(call: Call) -> dict[str, Any]:
    """DescribeHumanTaskUi: status, time and the template's SHA-256."""
    require_admin(call)
    name = required_string(call.params, "HumanTaskUiName")
    resource = get_resource(call, TASK_UI_KIND, "HumanTaskUi", name)
    content = resource.document["content"]
    return {"HumanTaskUiArn": sagemaker_arn(call, "human-task-ui", name), "HumanTaskUiName": name,
            "HumanTaskUiStatus": "Active", "CreationTime": epoch(resource.created_at),
            "UiTemplate": {"ContentSha256": hashlib.sha256(content.encode()).hexdigest()}}


def list_human_task_uis(call: Call) -> dict[str, Any]:
    """ListHumanTaskUis: creation-time window, sort order, paging."""
    require_admin(call)
    chunk, token = created_page(call, TASK_UI_KIND)
    return with_token({"HumanTaskUiSummaries": [
        {"HumanTaskUiName": r.name, "HumanTaskUiArn": sagemaker_arn(call, "human-task-ui", r.name),
         "CreationTime": epoch(r.created_at)} for r in chunk]}, token)


def delete_human_task_ui(call: Call) -> dict[str, Any]:
    """DeleteHumanTaskUi."""
    _delete(call, TASK_UI_KIND, "HumanTaskUi", "HumanTaskUiName")
    return {}


CONTROL_PLANE: dict[str, Handler] = {
    "DescribeWorkforce": describe_workforce, "ListWorkforces": list_workforces,
    "CreateWorkteam": create_workteam, "DescribeWorkteam": describe_workteam,
    "ListWorkteams": list_workteams, "UpdateWorkteam": update_workteam,
    "DeleteWorkteam": delete_workteam,
    "CreateHumanTaskUi": create_human_task_ui, "DescribeHumanTaskUi": describe_human_task_ui,
    "ListHumanTaskUis": list_human_task_uis, "DeleteHumanTaskUi": delete_human_task_ui,
}


# ----------------------------------------------------------- flow definitions
_FLOW = "flow-definition"
S3_PATH = re.compile(r"s3://(?P<bucket>[^/]+)(?:/(?P<prefix>.*))?")


def arn_name(arn: Any, kind: str, field: str) -> str:
    """The name at the end of an ARN of ``kind`` (``workteam``, ``human-task-ui``...)."""
    if not isinstance(arn, str) or f":{kind}/" not in arn:
        raise AwsError("ValidationException", f"{field} {arn!r} is not a {kind} ARN")
    return arn.rsplit("/", 1)[-1]


def _seconds(config: dict[str, Any], field: str, default: int) -> int:
    value = config.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AwsError("ValidationException", f"HumanLoopConfig.{field} must be a whole "
                       "number of seconds")
    return value


def create_flow_definition(call: Call) -> dict[str, Any]:
    """CreateFlowDefinition: a review flow on the work team's loopworks team, its task UI
    the human task UI's template; outputs go to OutputConfig.S3OutputPath in loopworks'
    object store (the bucket is made when missing)."""
    from loopworks.review.definitions import FlowDefinition

    require_admin(call)
    p = call.params
    name = named_param(p, "FlowDefinitionName", _TASK_UI_NAME)
    required_string(p, "RoleArn")
    if p.get("HumanLoopRequestSource"):
        raise AwsError("ValidationException", "built-in integrations (HumanLoopRequestSource: "
                       "Amazon Textract, Amazon Rekognition) are not supported; give a "
                       "HumanLoopConfig with a HumanTaskUiArn")
    output = p.get("OutputConfig")
    path = output.get("S3OutputPath") if isinstance(output, dict) else None
    found = S3_PATH.fullmatch(path) if isinstance(path, str) else None
    if found is None or not isinstance(path, str):
        raise AwsError("ValidationException", f"OutputConfig.S3OutputPath {path!r} is not an "
                       "s3://bucket/prefix URI")
    config = p.get("HumanLoopConfig")
    if not isinstance(config, dict):
        raise AwsError("ValidationException", "HumanLoopConfig is required")
    team_name = arn_name(config.get("WorkteamArn"), "workteam", "WorkteamArn")
    ui_name = arn_name(config.get("HumanTaskUiArn"), "human-task-ui", "HumanTaskUiArn")
    workteam = get_resource(call, WORKTEAM_KIND, "Workteam", team_name)
    task_ui = get_resource(call, TASK_UI_KIND, "HumanTaskUi", ui_name)
    conditions = None
    activation = p.get("HumanLoopActivationConfig")
    if isinstance(activation, dict):
        text = (activation.get("HumanLoopActivationConditionsConfig") or {}).get(
            "HumanLoopActivationConditions")
        try:
            conditions = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            raise AwsError("ValidationException", "HumanLoopActivationConditions is not "
                           "valid JSON") from None
    count = config.get("TaskCount")
    try:
        flow = FlowDefinition(
            name, workteam.document["teams"][0], [], path, title=str(config.get("TaskTitle", "")),
            description=str(config.get("TaskDescription", "")),
            task_count=count if isinstance(count, int) else 1,
            time_limit_seconds=_seconds(config, "TaskTimeLimitInSeconds", 3600),
            availability_lifetime_seconds=_seconds(
                config, "TaskAvailabilityLifetimeInSeconds", 864_000),
            activation_conditions=conditions, task_ui=task_ui.document["content"],
            output_store="objects", aws_arn=sagemaker_arn(call, "flow-definition", name))
    except ConfigurationError as exc:
        raise AwsError("ValidationException", str(exc)) from None
    try:
        call.lw.objects.create_bucket(found["bucket"], owner_id=call.worker.id)
    except ConflictError:
        pass
    try:
        _resources(call).create(_FLOW, name, {key: p[key] for key in (
            "HumanLoopConfig", "OutputConfig", "RoleArn", "HumanLoopActivationConfig")
            if key in p})
    except ConflictError:
        raise AwsError("ResourceInUse", f"FlowDefinition {name} already exists.") from None
    try:
        call.lw.review.create_flow(flow)
    except BaseException:
        _resources(call).delete(_FLOW, name)
        raise
    return {"FlowDefinitionArn": sagemaker_arn(call, "flow-definition", name)}


def describe_flow_definition(call: Call) -> dict[str, Any]:
    """DescribeFlowDefinition: what Create was given, Active once made."""
    require_admin(call)
    name = required_string(call.params, "FlowDefinitionName")
    resource = get_resource(call, _FLOW, "FlowDefinition", name)
    return {"FlowDefinitionArn": sagemaker_arn(call, "flow-definition", name),
            "FlowDefinitionName": name, "FlowDefinitionStatus": "Active",
            "CreationTime": epoch(resource.created_at), **resource.document}


def list_flow_definitions(call: Call) -> dict[str, Any]:
    """ListFlowDefinitions: creation-time window, sort order, paging."""
    require_admin(call)
    chunk, token = created_page(call, _FLOW)
    return with_token({"FlowDefinitionSummaries": [
        {"FlowDefinitionName": r.name, "FlowDefinitionArn": sagemaker_arn(call, "flow-definition",
                                                                   r.name),
         "FlowDefinitionStatus": "Active", "CreationTime": epoch(r.created_at)}
        for r in chunk]}, token)


def delete_flow_definition(call: Call) -> dict[str, Any]:
    """DeleteFlowDefinition: the flow and its loops (their outputs stay)."""
    require_admin(call)
    name = required_string(call.params, "FlowDefinitionName")
    get_resource(call, _FLOW, "FlowDefinition", name)
    try:
        call.lw.review.delete_flow(name)
    except NotFoundError:
        pass
    _resources(call).delete(_FLOW, name)
    return {}


CONTROL_PLANE.update({
    "CreateFlowDefinition": create_flow_definition,
    "DescribeFlowDefinition": describe_flow_definition,
    "ListFlowDefinitions": list_flow_definitions,
    "DeleteFlowDefinition": delete_flow_definition,
})


# ------------------------------------------------------- sagemaker-a2i-runtime
#: A2I's largest InputContent.
MAX_INPUT_CHARS = 3_145_728
_LOOP_NAME = re.compile(r"[a-z0-9](-*[a-z0-9]){0,62}")


def _a2i_error(code: str, message: str, status: int = 400) -> AwsError:
    return AwsError(code, message, status=status)


def _loop_flow(call: Call, name: str) -> str:
    found = call.lw.review.flows_of_loop(name)
    if not found:
        raise _a2i_error("ResourceNotFoundException", f"Human loop {name} does not exist.",
                         404)
    return found[0]


def _loop_out(call: Call, loop: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "CreationTime": loop.created_at.timestamp(), "HumanLoopStatus": loop.status.value,
        "HumanLoopName": loop.name, "HumanLoopArn": sagemaker_arn(call, "human-loop", loop.name),
        "FlowDefinitionArn": sagemaker_arn(call, "flow-definition", loop.flow)}
    if loop.failure_code:
        out["FailureCode"] = loop.failure_code
        out["FailureReason"] = loop.failure_reason or ""
    if loop.output_uri:
        out["HumanLoopOutput"] = {"OutputS3Uri": loop.output_uri}
    return out


def start_human_loop(call: Call) -> dict[str, Any]:
    """StartHumanLoop: InputContent is any JSON object (the task UI's task.input); a name
    is unique on the server: the same name and content again is the same loop."""
    require_admin(call)
    p = call.params
    name = required_string(p, "HumanLoopName")
    if not _LOOP_NAME.fullmatch(name):
        raise _a2i_error("ValidationException", f"HumanLoopName {name!r} must be 1-63 "
                         "lower-case letters, digits and hyphens")
    flow = arn_name(p.get("FlowDefinitionArn"), "flow-definition", "FlowDefinitionArn")
    given = p.get("HumanLoopInput")
    text = given.get("InputContent") if isinstance(given, dict) else None
    if not isinstance(text, str):
        raise _a2i_error("ValidationException", "HumanLoopInput.InputContent is required")
    if len(text) > MAX_INPUT_CHARS:
        raise _a2i_error("ValidationException", f"InputContent has {len(text):,} characters;"
                         f" at most {MAX_INPUT_CHARS:,}")
    try:
        content = json.loads(text)
    except ValueError:
        raise _a2i_error("ValidationException", "InputContent is not valid JSON") from None
    if not isinstance(content, dict):
        raise _a2i_error("ValidationException", "InputContent must be a JSON object")
    elsewhere = [f for f in call.lw.review.flows_of_loop(name) if f != flow]
    if elsewhere:
        raise _a2i_error("ConflictException", f"a human loop named {name} exists already "
                         f"(flow definition {elsewhere[0]})", 409)
    try:
        call.lw.review.flow(flow)
    except NotFoundError:
        raise _a2i_error("ResourceNotFoundException", f"Flow definition {flow} does not "
                         "exist.", 404) from None
    try:
        # Concurrent starts on one flow share one transaction (group commit, as PutRecord).
        _STARTS.put(flow, (name, content), lambda batch: _start_batch(call, flow, batch))
    except ConflictError:
        raise _a2i_error("ConflictException", f"Human loop {name} exists with other input "
                         "content.", 409) from None
    except (ConfigurationError, ValidationError, InputError) as exc:
        raise _a2i_error("ValidationException", str(exc)) from None
    return {"HumanLoopArn": sagemaker_arn(call, "human-loop", name)}


_STARTS = RecordBatcher()
_REFUSALS = (ConflictError, ConfigurationError, ValidationError, InputError)


def _start_batch(call: Call, flow: str, batch: list[tuple[str, dict[str, Any]]]
                 ) -> list[bool | BaseException]:
    """Start a batch of loops in one call; when the batch is refused (a conflict, a bad
    input, one name twice), one by one, so only the refused loops fail."""
    try:
        call.lw.review.start_human_loops(flow, batch)
        return [True] * len(batch)
    except _REFUSALS:
        if len(batch) == 1:
            raise
    results: list[bool | BaseException] = []
    for name, content in batch:
        try:
            call.lw.review.start_human_loop(name, flow, content)
            results.append(True)
        except _REFUSALS as exc:
            results.append(exc)
    return results


def describe_human_loop(call: Call) -> dict[str, Any]:
    """DescribeHumanLoop: by name alone."""
    require_admin(call)
    name = required_string(call.params, "HumanLoopName")
    return _loop_out(call, call.lw.review.describe_human_loop(name, _loop_flow(call, name)))


def _when(value: Any, field: str) -> datetime | None:
    from loopworks.clock import as_utc

    if value in (None, ""):
        return None
    try:
        return as_utc(value)
    except (ValueError, TypeError):
        raise _a2i_error("ValidationException", f"{field} {value!r} is not a time") from None


def list_human_loops(call: Call) -> dict[str, Any]:
    """ListHumanLoops: one flow's loops, creation-time window, sort order, paging."""
    require_admin(call)
    p = call.params
    flow = arn_name(p.get("FlowDefinitionArn"), "flow-definition", "FlowDefinitionArn")
    order = p.get("SortOrder") or "Ascending"
    if order not in ("Ascending", "Descending"):
        raise _a2i_error("ValidationException", "SortOrder must be Ascending or Descending")
    limit = p.get("MaxResults", "100")
    if not str(limit).isdigit() or not 1 <= int(limit) <= 100:
        raise _a2i_error("ValidationException", "MaxResults must be 1-100")
    try:
        loops, token = call.lw.review.list_human_loops(
            flow, created_after=_when(p.get("CreationTimeAfter"), "CreationTimeAfter"),
            created_before=_when(p.get("CreationTimeBefore"), "CreationTimeBefore"),
            max_results=int(limit), next_token=p.get("NextToken") or None,
            newest_first=order == "Descending")
    except NotFoundError:
        raise _a2i_error("ResourceNotFoundException", f"Flow definition {flow} does not "
                         "exist.", 404) from None
    except ConfigurationError as exc:
        raise _a2i_error("ValidationException", str(exc)) from None
    summaries = []
    for loop in loops:
        summary = {"HumanLoopName": loop.name, "HumanLoopStatus": loop.status.value,
                   "CreationTime": loop.created_at.timestamp(),
                   "FlowDefinitionArn": sagemaker_arn(call, "flow-definition", loop.flow)}
        if loop.failure_reason:
            summary["FailureReason"] = loop.failure_reason
        summaries.append(summary)
    return with_token({"HumanLoopSummaries": summaries}, token)


def _on_loop(call: Call, act: Any) -> dict[str, Any]:
    """Apply ``act(name, flow)`` to the loop a request names (by its name alone)."""
    require_admin(call)
    name = required_string(call.params, "HumanLoopName")
    try:
        act(name, _loop_flow(call, name))
    except ConflictError as exc:
        raise _a2i_error("ValidationException", str(exc)) from None
    return {}


def stop_human_loop(call: Call) -> dict[str, Any]:
    """StopHumanLoop."""
    return _on_loop(call, call.lw.review.stop_human_loop)


def delete_human_loop(call: Call) -> dict[str, Any]:
    """DeleteHumanLoop."""
    return _on_loop(call, call.lw.review.delete_human_loop)


#: The sagemaker-a2i-runtime operations: (method, route) → handler.
A2I_RUNTIME: dict[tuple[str, str], Handler] = {
    ("POST", "start"): start_human_loop, ("GET", "describe"): describe_human_loop,
    ("GET", "list"): list_human_loops, ("POST", "stop"): stop_human_loop,
    ("DELETE", "delete"): delete_human_loop,
}
