"""SageMaker Feature Store over the wire: the ``sagemaker`` control-plane operations on
feature groups and the ``sagemaker-featurestore-runtime`` record operations, translated to
and from loopworks' :class:`~loopworks.featurestore.FeatureStore`.

SageMaker's types are kept beside the group: a group made here remembers how its event time
was declared (``String`` in ISO 8601, or ``Fractional`` epoch seconds) and its store
configuration, so Describe gives back what Create was given and GetRecord answers in the
form PutRecord took. Every value travels as ``ValueAsString`` and is typed by the group's
definitions; a value that does not parse is a ValidationError naming the feature.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from loopworks.clock import as_utc
from loopworks.errors import ConflictError, LoopworksError, NotFoundError, PermissionDenied
from loopworks.featurestore import FeatureDefinition, FeatureGroup
from loopworks.featurestore.definitions import FeatureType
from loopworks.featurestore.registry import FeatureGroupSpec
from loopworks.labeling.workforce import Role, Worker
from loopworks.objectstore import BUCKET_PATTERN
from loopworks.server.aws.protocols import AwsError, page, required_string, with_token
from loopworks.services import Loopworks

__all__ = ["CONTROL_PLANE", "RUNTIME", "Call", "Handler"]

_SAGEMAKER_KEY = "sagemaker"
_SCALAR_TO_SAGEMAKER = {FeatureType.STRING: "String", FeatureType.INTEGRAL: "Integral",
                        FeatureType.FRACTIONAL: "Fractional", FeatureType.BOOLEAN: "Integral",
                        FeatureType.TIMESTAMP: "String"}
_ELEMENT_TO_SAGEMAKER = {"int32": "Integral", "int64": "Integral", "float32": "Fractional",
                         "float64": "Fractional", "string": "String", "bool": "Integral"}
_SAGEMAKER_ELEMENT = {"Integral": "int64", "Fractional": "float64", "String": "string"}
_TTL_SECONDS = {"Seconds": 1, "Minutes": 60, "Hours": 3600, "Days": 86400, "Weeks": 604800}


@dataclass(frozen=True)
class Call:
    """One operation call: the services, who signed it, the scope's region, the input."""

    lw: Loopworks
    worker: Worker
    region: str
    params: dict[str, Any]
    host: str = ""  # the Host the request was sent to

    def arn(self, name: str) -> str:
        """The ARN of a feature group, in AWS's form."""
        account = self.lw.settings.aws_account_id
        return f"arn:aws:sagemaker:{self.region}:{account}:feature-group/{name.lower()}"


def _require(call: Call, *, write: bool) -> None:
    """Feature data is for admins (as on the JSON API): annotators and reviewers may not
    read it, and only admins change groups or records."""
    if call.worker.role is not Role.ADMIN:
        verb = "change" if write else "read"
        raise PermissionDenied(f"worker {call.worker.name!r} ({call.worker.role.value}) may "
                               f"not {verb} feature groups", worker=call.worker.name)


def _group(call: Call, name: str, *, runtime: bool = False) -> FeatureGroup:
    """The named group, else ResourceNotFound as the service words it (the control plane
    answers 400, as SageMaker's JSON protocol does; the runtime 404)."""
    try:
        return call.lw.features.feature_group(name)
    except NotFoundError:
        message = (f"Resource Not Found: Feature group {name} could not be found" if runtime
                   else f"Resource Not Found: Amazon SageMaker can't find a FeatureGroup "
                   f"with name {name}")
        raise AwsError("ResourceNotFound", message, status=404 if runtime else 400) \
            from None


def _sagemaker_meta(spec: FeatureGroupSpec) -> dict[str, Any]:
    meta = spec.transformation.get(_SAGEMAKER_KEY)
    return meta if isinstance(meta, dict) else {}


# ------------------------------------------------------------------ definitions
def _to_definition(item: Any, event_time: str) -> tuple[FeatureDefinition, str]:
    if not isinstance(item, dict) or not isinstance(item.get("FeatureName"), str):
        raise AwsError("ValidationException", "each FeatureDefinitions entry needs a "
                       "FeatureName and a FeatureType")
    name, kind = item["FeatureName"], item.get("FeatureType")
    if kind not in ("Integral", "Fractional", "String"):
        raise AwsError("ValidationException", f"feature {name!r}: FeatureType must be "
                       f"Integral, Fractional or String, not {kind!r}")
    if name == event_time:
        return FeatureDefinition(name, FeatureType.TIMESTAMP), kind
    collection = item.get("CollectionType")
    if collection is not None:
        if collection not in ("List", "Vector"):
            raise AwsError("ValidationException", f"feature {name!r}: CollectionType "
                           f"{collection!r} is not supported here (List or Vector)")
        size = (item.get("CollectionConfig") or {}).get("VectorConfig", {}).get("Dimension")
        return FeatureDefinition(name, FeatureType.LIST, element=_SAGEMAKER_ELEMENT[kind],
                                 length=int(size) if size else None), kind
    scalar = {"Integral": FeatureType.INTEGRAL, "Fractional": FeatureType.FRACTIONAL,
              "String": FeatureType.STRING}[kind]
    return FeatureDefinition(name, scalar), kind


def _from_definition(definition: FeatureDefinition, meta: dict[str, Any]) -> dict[str, Any]:
    declared = meta.get("types", {}).get(definition.name)
    if definition.type is FeatureType.LIST:
        out: dict[str, Any] = {"FeatureName": definition.name,
                               "FeatureType": _ELEMENT_TO_SAGEMAKER[definition.element or
                                                                    "string"],
                               "CollectionType": "Vector" if definition.length else "List"}
        if definition.length:
            out["CollectionConfig"] = {"VectorConfig": {"Dimension": definition.length}}
        return out
    return {"FeatureName": definition.name,
            "FeatureType": declared or _SCALAR_TO_SAGEMAKER[definition.type]}


def _ttl_seconds(ttl: Any) -> float | None:
    if ttl is None:
        return None
    if not isinstance(ttl, dict) or ttl.get("Unit") not in _TTL_SECONDS \
            or not isinstance(ttl.get("Value"), int) or ttl["Value"] < 1:
        raise AwsError("ValidationException", "TtlDuration needs a Unit (Seconds, Minutes, "
                       "Hours, Days or Weeks) and a positive Value")
    return float(ttl["Value"] * _TTL_SECONDS[ttl["Unit"]])


def _ttl_duration(seconds: float | None) -> dict[str, Any] | None:
    if seconds is None:
        return None
    for unit in ("Weeks", "Days", "Hours", "Minutes"):
        if seconds % _TTL_SECONDS[unit] == 0:
            return {"Unit": unit, "Value": int(seconds // _TTL_SECONDS[unit])}
    return {"Unit": "Seconds", "Value": max(1, int(seconds))}


# ---------------------------------------------------------------- control plane
_S3_URI = re.compile(r"s3://(?P<bucket>[^/]+)(?:/(?P<prefix>.*))?")


def _resolved_location(call: Call, name: str, offline: Any) -> tuple[str, str] | None:
    """Where SageMaker would put the group's offline data under its S3 URI: (bucket, key
    prefix ``<prefix>/<account>/sagemaker/<region>/offline-store/<group>-<epoch>/data``)."""
    storage = offline.get("S3StorageConfig") if isinstance(offline, dict) else None
    if not isinstance(storage, dict):
        return None
    uri = storage.get("S3Uri")
    found = _S3_URI.fullmatch(uri) if isinstance(uri, str) else None
    if found is None or not BUCKET_PATTERN.match(found["bucket"]):
        raise AwsError("ValidationException", f"OfflineStoreConfig.S3StorageConfig.S3Uri "
                       f"{uri!r} is not an s3://bucket/prefix URI")
    prefix = (found["prefix"] or "").strip("/")
    parts = [prefix] if prefix else []
    parts += [call.lw.settings.aws_account_id, "sagemaker", call.region, "offline-store",
              f"{name}-{int(datetime.now(UTC).timestamp())}", "data"]
    return found["bucket"], "/".join(parts)


def _mount_offline(call: Call, name: str, location: tuple[str, str]) -> None:
    """Serve the group's Delta table at its resolved S3 location (the bucket is created
    when missing); an offline store that is not on local disk is not mounted."""
    directory = call.lw.features.offline.uri(name)
    if "://" in directory:
        return
    bucket, prefix = location
    try:
        call.lw.objects.create_bucket(bucket, owner_id=call.worker.id)
    except ConflictError:
        pass
    call.lw.objects.mount(bucket, prefix, Path(directory), f"feature group {name}'s offline "
                          "store (its Delta table)")


def create_feature_group(call: Call) -> dict[str, Any]:
    """CreateFeatureGroup: the group, its definitions typed, its store configuration kept."""
    _require(call, write=True)
    p = call.params
    name = required_string(p, "FeatureGroupName")
    record_id = required_string(p, "RecordIdentifierFeatureName")
    event_time = required_string(p, "EventTimeFeatureName")
    items = p.get("FeatureDefinitions")
    if not isinstance(items, list) or not items:
        raise AwsError("ValidationException", "FeatureDefinitions must list the features")
    typed = [_to_definition(item, event_time) for item in items]
    kinds = {d.name: kind for d, kind in typed}
    if kinds.get(event_time) not in (None, "String", "Fractional"):
        raise AwsError("ValidationException", f"the event time feature {event_time!r} must "
                       f"be String or Fractional, not {kinds[event_time]}")
    online = p.get("OnlineStoreConfig") or {}
    offline = p.get("OfflineStoreConfig")
    if not online.get("EnableOnlineStore") and not offline:
        raise AwsError("ValidationException", "a feature group needs an online store "
                       "(OnlineStoreConfig.EnableOnlineStore), an offline store "
                       "(OfflineStoreConfig) or both")
    location = _resolved_location(call, name, offline)
    meta = {"types": kinds, "online": bool(online.get("EnableOnlineStore")),
            "offline": offline, "role_arn": p.get("RoleArn"),
            "created": datetime.now(UTC).isoformat(),
            "resolved": f"s3://{location[0]}/{location[1]}" if location else None}
    tags = {t["Key"]: t.get("Value", "") for t in p.get("Tags") or []
            if isinstance(t, dict) and isinstance(t.get("Key"), str)}
    try:
        call.lw.features.create_feature_group(
            name, record_id=record_id, event_time=event_time,
            definitions=[d for d, _ in typed], description=str(p.get("Description") or ""),
            tags=tags, ttl_seconds=_ttl_seconds(online.get("TtlDuration")),
            transformation={_SAGEMAKER_KEY: meta})
    except ConflictError:
        raise AwsError("ResourceInUse", f"Resource Already Exists: FeatureGroup with name "
                       f"{name} already exists. Choose a different name.") from None
    if location is not None:
        _mount_offline(call, name, location)
    return {"FeatureGroupArn": call.arn(name)}


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    return as_utc(text).timestamp()


def describe_feature_group(call: Call) -> dict[str, Any]:
    """DescribeFeatureGroup: what Create was given, statuses, ARNs, resolved S3 URI."""
    _require(call, write=False)
    spec = _group(call, required_string(call.params, "FeatureGroupName")).spec
    meta = _sagemaker_meta(spec)
    out: dict[str, Any] = {
        "FeatureGroupArn": call.arn(spec.name), "FeatureGroupName": spec.name,
        "RecordIdentifierFeatureName": spec.record_id, "EventTimeFeatureName": spec.event_time,
        "FeatureDefinitions": [_from_definition(d, meta) for d in spec.definitions],
        "CreationTime": _epoch(spec.created_at), "LastModifiedTime": _epoch(spec.updated_at),
        "FeatureGroupStatus": "Created", "Description": spec.description, "NextToken": ""}
    if meta.get("online", True):
        config: dict[str, Any] = {"EnableOnlineStore": True}
        ttl = _ttl_duration(spec.ttl_seconds)
        if ttl:
            config["TtlDuration"] = ttl
        out["OnlineStoreConfig"] = config
    offline = meta.get("offline") if meta else {"S3StorageConfig": {"S3Uri": ""}}
    if offline:
        storage = dict(offline.get("S3StorageConfig") or {})
        storage["ResolvedOutputS3Uri"] = meta.get("resolved") \
            or call.lw.features.offline.uri(spec.name)
        out["OfflineStoreConfig"] = {**offline, "S3StorageConfig": storage}
        out["OfflineStoreStatus"] = {"Status": "Active"}
    if meta.get("role_arn"):
        out["RoleArn"] = meta["role_arn"]
    return out


def list_feature_groups(call: Call) -> dict[str, Any]:
    """ListFeatureGroups: name filter, creation-time filters, sort, paging."""
    _require(call, write=False)
    p = call.params
    specs = call.lw.features.list_feature_groups()
    contains = p.get("NameContains")
    if contains:
        specs = [s for s in specs if contains in s.name]
    after, before = p.get("CreationTimeAfter"), p.get("CreationTimeBefore")
    if after is not None:
        specs = [s for s in specs if _epoch(s.created_at) > float(after)]
    if before is not None:
        specs = [s for s in specs if _epoch(s.created_at) < float(before)]
    if p.get("FeatureGroupStatusEquals") not in (None, "Created"):
        specs = []
    if p.get("OfflineStoreStatusEquals") not in (None, "Active"):
        specs = []
    by = p.get("SortBy", "CreationTime")
    specs.sort(key=(lambda s: s.name) if by == "Name" else (lambda s: _epoch(s.created_at)),
               reverse=p.get("SortOrder", "Descending") == "Descending")
    chunk, token = page(specs, p)
    return with_token({"FeatureGroupSummaries": [
        {"FeatureGroupName": s.name, "FeatureGroupArn": call.arn(s.name),
         "CreationTime": _epoch(s.created_at), "FeatureGroupStatus": "Created",
         "OfflineStoreStatus": {"Status": "Active"}} for s in chunk]}, token)


def delete_feature_group(call: Call) -> dict[str, Any]:
    """DeleteFeatureGroup: the group with its online and offline data."""
    _require(call, write=True)
    name = required_string(call.params, "FeatureGroupName")
    resolved = _sagemaker_meta(_group(call, name).spec).get("resolved")
    call.lw.features.delete_feature_group(name)
    if resolved:
        bucket, _, prefix = resolved.removeprefix("s3://").partition("/")
        call.lw.objects.unmount(bucket, prefix)
    return {}


# ---------------------------------------------------------------------- runtime
def _parse_scalar(text: Any, definition: FeatureDefinition, kind: str | None) -> Any:
    if not isinstance(text, str):
        raise ValueError("not a string")
    if definition.type is FeatureType.TIMESTAMP:
        if kind == "Fractional" or _looks_numeric(text):
            seconds = float(text)
            if not math.isfinite(seconds):
                raise ValueError("not a finite number")
            return datetime.fromtimestamp(seconds, UTC)
        return as_utc(text)
    if definition.type is FeatureType.INTEGRAL:
        return int(text)
    if definition.type is FeatureType.FRACTIONAL:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if definition.type is FeatureType.BOOLEAN:
        if text.lower() in ("1", "true"):
            return True
        if text.lower() in ("0", "false"):
            return False
        raise ValueError("not 0, 1, true or false")
    return text


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_element(text: Any, element: str | None) -> Any:
    if not isinstance(text, str):
        raise ValueError("not a string")
    if element in ("int32", "int64"):
        return int(text)
    if element in ("float32", "float64"):
        return float(text)
    if element == "bool":
        return text.lower() in ("1", "true")
    return text


def _record_values(spec: FeatureGroupSpec, record: Any, *, complete: bool = True
                   ) -> dict[str, Any]:
    if not isinstance(record, list) or not record:
        raise AwsError("ValidationError", "Record must list at least one feature value",
                       status=400)
    meta = _sagemaker_meta(spec)
    values: dict[str, Any] = {}
    for item in record:
        if not isinstance(item, dict) or not isinstance(item.get("FeatureName"), str):
            raise AwsError("ValidationError", "each Record entry needs a FeatureName",
                           status=400)
        name = item["FeatureName"]
        try:
            definition = spec.definition(name)
        except LoopworksError:
            raise AwsError("ValidationError", f"The feature {name} is not defined in the "
                           f"feature group {spec.name}", status=400) from None
        try:
            if definition.type is FeatureType.LIST:
                raw = item.get("ValueAsStringList")
                if not isinstance(raw, list):
                    raise ValueError("a collection feature takes ValueAsStringList")
                values[name] = [_parse_element(v, definition.element) for v in raw]
            else:
                values[name] = _parse_scalar(item.get("ValueAsString"), definition,
                                             meta.get("types", {}).get(name))
        except (ValueError, TypeError, OverflowError) as exc:
            raise AwsError("ValidationError", f"The value of feature {name} cannot be read as "
                           f"its type {_from_definition(definition, meta)['FeatureType']}: "
                           f"{exc}", status=400) from None
    for needed in (spec.record_id, spec.event_time) if complete else ():
        if needed not in values:
            role = "record identifier" if needed == spec.record_id else "event time"
            raise AwsError("ValidationError", f"The record must have the feature {needed} "
                           f"(the group's {role})", status=400)
    return values


_STORES = ("OnlineStore", "OfflineStore")


def _configured_stores(spec: FeatureGroupSpec) -> tuple[bool, bool]:
    """(online, offline): the stores the group was created with (both for a group made
    outside this endpoint)."""
    meta = _sagemaker_meta(spec)
    if not meta:
        return True, True
    return bool(meta.get("online", True)), bool(meta.get("offline"))


def _target_stores(spec: FeatureGroupSpec, requested: Any) -> tuple[bool, bool]:
    """(online, offline) for a write or delete: its TargetStores, which must be stores the
    group has, or the group's stores."""
    online, offline = _configured_stores(spec)
    if requested is None:
        return online, offline
    if not isinstance(requested, list) or not requested \
            or any(store not in _STORES for store in requested):
        raise AwsError("ValidationError", "TargetStores must list OnlineStore and/or "
                       f"OfflineStore, not {requested!r}", status=400)
    for store, present in zip(_STORES, (online, offline), strict=True):
        if store in requested and not present:
            raise AwsError("ValidationError", f"The feature group {spec.name} has no "
                           f"{'online' if store == 'OnlineStore' else 'offline'} store, so "
                           f"{store} cannot be a target store", status=400)
    return "OnlineStore" in requested, "OfflineStore" in requested


def _require_online(spec: FeatureGroupSpec) -> None:
    if not _configured_stores(spec)[0]:
        raise AwsError("ValidationError", f"The feature group {spec.name} has no online "
                       "store: its records are read from the offline store (SQL or a data "
                       "set), not with GetRecord", status=400)


def put_record(call: Call) -> dict[str, Any]:
    """PutRecord: typed by the definitions; TtlDuration overrides the group's TTL;
    TargetStores picks the stores (default: the group's)."""
    _require(call, write=True)
    group = _group(call, required_string(call.params, "FeatureGroupName"), runtime=True)
    values = _record_values(group.spec, call.params.get("Record"))
    ttl = _ttl_seconds(call.params.get("TtlDuration"))
    online, offline = _target_stores(group.spec, call.params.get("TargetStores"))
    # As SageMaker: online (and durably spooled) now, in the offline history within a moment.
    group.put_record(values, ttl_seconds=ttl, offline_later=True, online=online,
                     offline=offline)
    return {}


def _format(value: Any, definition: FeatureDefinition, kind: str | None) -> dict[str, Any]:
    if definition.type is FeatureType.LIST:
        return {"FeatureName": definition.name,
                "ValueAsStringList": [_text(v) for v in value]}
    if isinstance(value, datetime):
        moment = as_utc(value)
        text = (repr(moment.timestamp()) if kind == "Fractional"
                else moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        return {"FeatureName": definition.name, "ValueAsString": text}
    return {"FeatureName": definition.name, "ValueAsString": _text(value)}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _record_out(spec: FeatureGroupSpec, record: dict[str, Any],
                names: Sequence[str] | None) -> list[dict[str, Any]]:
    meta = _sagemaker_meta(spec)
    wanted = list(names) if names else [d.name for d in spec.definitions]
    out = []
    for name in wanted:
        value = record.get(name)
        if value is None:
            continue
        out.append(_format(value, spec.definition(name), meta.get("types", {}).get(name)))
    return out


def get_record(call: Call) -> dict[str, Any]:
    """GetRecord: the latest record online; an empty answer when there is none."""
    _require(call, write=False)
    group = _group(call, required_string(call.params, "FeatureGroupName"), runtime=True)
    record_id = required_string(call.params, "RecordIdentifierValueAsString")
    names = call.params.get("FeatureNames") or None
    _require_online(group.spec)
    try:
        record = group.get_record(record_id, names)
    except LoopworksError as exc:
        raise AwsError("ValidationError", str(exc), status=400) from None
    if record is None:
        return {}
    out: dict[str, Any] = {"Record": _record_out(group.spec, record, names)}
    if call.params.get("ExpirationTimeResponse") == "Enabled":
        expires = group.expires_at(record_id)
        if expires is not None:
            out["ExpiresAt"] = expires.strftime("%Y-%m-%dT%H:%M:%S.") \
                + f"{expires.microsecond // 1000:03d}Z"
    return out


def delete_record(call: Call) -> dict[str, Any]:
    """DeleteRecord: SoftDelete (default) or HardDelete at the given event time."""
    _require(call, write=True)
    group = _group(call, required_string(call.params, "FeatureGroupName"), runtime=True)
    record_id = required_string(call.params, "RecordIdentifierValueAsString")
    event_time = required_string(call.params, "EventTime")
    mode = call.params.get("DeletionMode") or "SoftDelete"
    if mode not in ("SoftDelete", "HardDelete"):
        raise AwsError("ValidationError", "DeletionMode must be SoftDelete or HardDelete",
                       status=400)
    try:
        when = _parse_scalar(event_time, group.spec.definition(group.spec.event_time),
                             _sagemaker_meta(group.spec).get("types", {}).get(
                                 group.spec.event_time))
    except (ValueError, TypeError, OverflowError):
        raise AwsError("ValidationError", f"EventTime {event_time!r} is not an ISO 8601 time "
                       "or epoch seconds", status=400) from None
    online, offline = _target_stores(group.spec, call.params.get("TargetStores"))
    group.delete_record(record_id, when, hard=mode == "HardDelete", online=online,
                        offline=offline)
    return {}


def batch_get_record(call: Call) -> dict[str, Any]:
    """BatchGetRecord: records found, an error per missing group, unprocessed: none."""
    _require(call, write=False)
    identifiers = call.params.get("Identifiers")
    if not isinstance(identifiers, list) or not identifiers:
        raise AwsError("ValidationError", "Identifiers must list at least one feature group",
                       status=400)
    records: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for ident in identifiers:
        name = ident.get("FeatureGroupName", "") if isinstance(ident, dict) else ""
        ids = ident.get("RecordIdentifiersValueAsString") if isinstance(ident, dict) else None
        if not isinstance(ids, list):
            raise AwsError("ValidationError", "each identifier needs "
                           "RecordIdentifiersValueAsString", status=400)
        try:
            group = call.lw.features.feature_group(name)
        except NotFoundError:
            errors.extend({"FeatureGroupName": name, "RecordIdentifierValueAsString": str(i),
                           "ErrorCode": "ResourceNotFound",
                           "ErrorMessage": f"Feature group {name} could not be found"}
                          for i in ids)
            continue
        if not _configured_stores(group.spec)[0]:
            errors.extend({"FeatureGroupName": name, "RecordIdentifierValueAsString": str(i),
                           "ErrorCode": "ValidationError",
                           "ErrorMessage": f"The feature group {name} has no online store"}
                          for i in ids)
            continue
        names = ident.get("FeatureNames") or None
        found = group.batch_get_record([str(i) for i in ids], names)
        for record_id, record in zip(ids, found, strict=True):
            if record is not None:
                records.append({"FeatureGroupName": name,
                                "RecordIdentifierValueAsString": str(record_id),
                                "Record": _record_out(group.spec, record, names)})
    return {"Records": records, "Errors": errors, "UnprocessedIdentifiers": []}


# ------------------------------------------------------- updates and metadata
def update_feature_group(call: Call) -> dict[str, Any]:
    """UpdateFeatureGroup: FeatureAdditions, and the online store's TtlDuration."""
    _require(call, write=True)
    group = _group(call, required_string(call.params, "FeatureGroupName"))
    additions = call.params.get("FeatureAdditions") or []
    if additions:
        typed = [_to_definition(item, "") for item in additions]
        meta = _sagemaker_meta(group.spec)
        group.add_features([d for d, _ in typed])
        meta.setdefault("types", {}).update({d.name: kind for d, kind in typed})
        group.spec.transformation[_SAGEMAKER_KEY] = meta
        call.lw.features.update_spec(group.spec)
    online = call.params.get("OnlineStoreConfig")
    if isinstance(online, dict) and "TtlDuration" in online:
        group.spec.ttl_seconds = _ttl_seconds(online["TtlDuration"])
        call.lw.features.update_spec(group.spec)
    return {"FeatureGroupArn": call.arn(group.name)}


def _feature_metadata(call: Call, spec: FeatureGroupSpec, definition: FeatureDefinition
                      ) -> dict[str, Any]:
    meta = _sagemaker_meta(spec)
    parameters = meta.get("parameters", {}).get(definition.name, {})
    modified = meta.get("feature_modified", {}).get(definition.name) or spec.updated_at
    return {"FeatureGroupArn": call.arn(spec.name), "FeatureGroupName": spec.name,
            "FeatureName": definition.name,
            "FeatureType": _from_definition(definition, meta)["FeatureType"],
            "CreationTime": _epoch(spec.created_at), "LastModifiedTime": _epoch(modified),
            "Description": definition.description,
            "Parameters": [{"Key": k, "Value": v} for k, v in sorted(parameters.items())]}


def _definition(spec: FeatureGroupSpec, name: str) -> FeatureDefinition:
    try:
        return spec.definition(name)
    except LoopworksError:
        raise AwsError("ResourceNotFound", f"Resource Not Found: FeatureGroup {spec.name} has "
                       f"no feature {name}") from None


def describe_feature_metadata(call: Call) -> dict[str, Any]:
    """DescribeFeatureMetadata: a feature's type, description and parameters."""
    _require(call, write=False)
    spec = _group(call, required_string(call.params, "FeatureGroupName")).spec
    return _feature_metadata(call, spec, _definition(spec, required_string(call.params,
                                                                   "FeatureName")))


def update_feature_metadata(call: Call) -> dict[str, Any]:
    """UpdateFeatureMetadata: a feature's description, parameters added and removed."""
    import dataclasses

    _require(call, write=True)
    group = _group(call, required_string(call.params, "FeatureGroupName"))
    spec = group.spec
    definition = _definition(spec, required_string(call.params, "FeatureName"))
    meta = _sagemaker_meta(spec)
    parameters = meta.setdefault("parameters", {}).setdefault(definition.name, {})
    for item in call.params.get("ParameterAdditions") or []:
        if not isinstance(item, dict) or not isinstance(item.get("Key"), str):
            raise AwsError("ValidationException", "each ParameterAdditions entry needs a Key")
        parameters[item["Key"]] = str(item.get("Value", ""))
    for key in call.params.get("ParameterRemovals") or []:
        parameters.pop(str(key), None)
    if "Description" in call.params:
        spec.definitions = [dataclasses.replace(d, description=str(call.params["Description"]))
                            if d.name == definition.name else d for d in spec.definitions]
    meta.setdefault("feature_modified", {})[definition.name] = datetime.now(UTC).isoformat()
    spec.transformation[_SAGEMAKER_KEY] = meta
    call.lw.features.update_spec(spec)
    return {}


# ---------------------------------------------------------------------- search
def _group_document(call: Call, spec: FeatureGroupSpec) -> dict[str, Any]:
    described = describe_feature_group(Call(call.lw, call.worker, call.region,
                                            {"FeatureGroupName": spec.name}))
    described.pop("NextToken", None)
    described["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
    return described


def _lookup(document: Any, path: str) -> list[Any]:
    """Every value at a dotted path (lists are searched element by element; ``Tags.k``
    and ``Parameters.k`` name the value of the entry with that key)."""
    values = [document]
    for part in path.split("."):
        found: list[Any] = []
        for value in values:
            if isinstance(value, list):
                if all(isinstance(v, dict) and "Key" in v for v in value):
                    found.extend(v.get("Value") for v in value if v.get("Key") == part)
                else:
                    found.extend(v[part] for v in value if isinstance(v, dict) and part in v)
            elif isinstance(value, dict) and part in value:
                found.append(value[part])
        values = found
    return [v for v in values if v is not None]


def _matches(value: Any, operator: str, text: str | None) -> bool:
    if operator == "Exists":
        return True
    if text is None:
        raise AwsError("ValidationException", f"the {operator} operator needs a Value")
    if operator == "Contains":
        return text.lower() in str(value).lower()
    if operator == "In":
        return str(value) in [t.strip() for t in text.split(",")]
    left: Any = value
    right: Any = text
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            right = float(text) if not _looks_time(text) else as_utc(text).timestamp()
        except ValueError:
            return False
    else:
        left = str(value)
    outcome = {"Equals": left == right, "NotEquals": left != right,
               "GreaterThan": left > right, "GreaterThanOrEqualTo": left >= right,
               "LessThan": left < right, "LessThanOrEqualTo": left <= right}[operator]
    return bool(outcome)


def _looks_time(text: str) -> bool:
    return len(text) >= 10 and text[4] == "-" and text[7] == "-"


_OPERATORS = ("Equals", "NotEquals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan",
              "LessThanOrEqualTo", "Contains", "Exists", "NotExists", "In")


def _filter(document: dict[str, Any], item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
        raise AwsError("ValidationException", "each filter needs a Name")
    operator = item.get("Operator", "Equals")
    if operator not in _OPERATORS:
        raise AwsError("ValidationException", f"unknown filter Operator {operator!r}")
    values = _lookup(document, item["Name"])
    if operator == "NotExists":
        return not values
    return any(_matches(v, operator, item.get("Value")) for v in values)


def _expression(document: dict[str, Any], expression: Any) -> bool:
    if not expression:
        return True
    if not isinstance(expression, dict):
        raise AwsError("ValidationException", "SearchExpression must be an object")
    results = [_filter(document, f) for f in expression.get("Filters") or []]
    for nested in expression.get("NestedFilters") or []:
        prefix = str(nested.get("NestedPropertyName", ""))
        elements = _lookup(document, prefix)
        flat = [e for v in elements for e in (v if isinstance(v, list) else [v])]
        results.append(any(all(_filter({prefix: [element]}, f)
                               for f in nested.get("Filters") or []) for element in flat))
    results.extend(_expression(document, sub) for sub in expression.get("SubExpressions")
                   or [])
    if not results:
        return True
    return any(results) if expression.get("Operator") == "Or" else all(results)


def search(call: Call) -> dict[str, Any]:
    """Search over FeatureGroup and FeatureMetadata: filters, nested filters, sub-expressions,
    sort and paging, as AWS documents them."""
    _require(call, write=False)
    resource = required_string(call.params, "Resource")
    specs = call.lw.features.list_feature_groups()
    documents: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if resource == "FeatureGroup":
        for spec in specs:
            doc = _group_document(call, spec)
            documents.append((doc, {"FeatureGroup": doc}))
    elif resource == "FeatureMetadata":
        for spec in specs:
            for definition in spec.definitions:
                doc = _feature_metadata(call, spec, definition)
                documents.append((doc, {"FeatureMetadata": doc}))
    else:
        raise AwsError("ValidationException", f"Search over {resource} is not supported by "
                       "this server (FeatureGroup and FeatureMetadata are)")
    expression = call.params.get("SearchExpression")
    hits = [(doc, result) for doc, result in documents if _expression(doc, expression)]
    by = call.params.get("SortBy")
    if by:
        def key(pair: tuple[dict[str, Any], dict[str, Any]]) -> tuple[int, Any]:
            found = _lookup(pair[0], str(by))
            return (0, found[0]) if found else (1, "")
        hits.sort(key=key, reverse=call.params.get("SortOrder", "Descending") == "Descending")
    chunk, token = page(hits, call.params)
    return with_token({"Results": [result for _, result in chunk],
                           "TotalHits": {"Value": len(hits), "Relation": "EqualTo"}}, token)


def batch_write_record(call: Call) -> dict[str, Any]:
    """BatchWriteRecord: entries typed and checked one by one (a bad one is an error of its
    own, the others are written), then written per group in one batch."""
    _require(call, write=True)
    entries = call.params.get("Entries")
    if not isinstance(entries, list) or not entries:
        raise AwsError("ValidationError", "Entries must list at least one record", status=400)
    default_ttl = _ttl_seconds(call.params.get("TtlDuration"))
    errors: list[dict[str, Any]] = []
    batches: dict[tuple[str, float | None, bool, bool], list[dict[str, Any]]] = {}
    groups: dict[str, FeatureGroup] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise AwsError("ValidationError", "each entry must be an object", status=400)
        name = str(entry.get("FeatureGroupName", ""))
        try:
            if name not in groups:
                groups[name] = _group(call, name, runtime=True)
            values = _record_values(groups[name].spec, entry.get("Record"))
            ttl = _ttl_seconds(entry["TtlDuration"]) if entry.get("TtlDuration") \
                else default_ttl
            online, offline = _target_stores(groups[name].spec, entry.get("TargetStores"))
        except AwsError as exc:
            errors.append({"Entry": entry, "ErrorCode": exc.code, "ErrorMessage": exc.message})
            continue
        batches.setdefault((name, ttl, online, offline), []).append(values)
    for (name, ttl, online, offline), rows in batches.items():
        group = groups[name]
        if ttl is None and online and offline:
            group.ingest(pa.Table.from_pylist(rows))
        else:
            for row in rows:
                group.put_record(row, ttl_seconds=ttl, offline_later=True, online=online,
                                 offline=offline)
    return {"Errors": errors, "UnprocessedEntries": []}


def list_records(call: Call) -> dict[str, Any]:
    """ListRecords: the record identifiers of a group's live records, in order, a page at
    a time (with IncludeSoftDeletedRecords, the soft-deleted ones too)."""
    from loopworks.featurestore.sql import sql_identifier

    _require(call, write=False)
    group = _group(call, required_string(call.params, "FeatureGroupName"), runtime=True)
    spec = group.spec
    include_deleted = str(call.params.get("IncludeSoftDeletedRecords", "")).lower() == "true"
    call.lw.features.flush_spooled()  # the ids come from the history: bring it up to date
    record_id = sql_identifier(spec.record_id)
    if include_deleted:
        sql = f"SELECT DISTINCT {record_id} AS id FROM {sql_identifier(spec.name)} ORDER BY 1"
    else:
        sql = f"SELECT {record_id} AS id FROM {sql_identifier(spec.name + '_latest')} ORDER BY 1"
    ids = [str(i) for i in call.lw.features.query(sql)["id"]] \
        if call.lw.features.offline.exists(spec.name) else []
    params = dict(call.params)
    if "MaxResults" in params:
        params["MaxResults"] = int(params["MaxResults"])
    chunk, token = page(ids, params, default=100)
    return with_token({"RecordIdentifiers": chunk}, token)


def update_record(call: Call) -> dict[str, Any]:
    """UpdateRecord: some features of a live record; the event time kept unless given, an
    older one refused (ConflictException)."""
    _require(call, write=True)
    group = _group(call, required_string(call.params, "FeatureGroupName"), runtime=True)
    spec = group.spec
    record_id = required_string(call.params, "RecordIdentifierValueAsString")
    current = group.get_record(record_id)
    if current is None:
        raise AwsError("ResourceNotFound", f"Record {record_id} was not found in feature group "
                       f"{spec.name}", status=404)
    changes = _record_values(spec, call.params.get("Features"), complete=False)
    if spec.record_id in changes and str(changes[spec.record_id]) != record_id:
        raise AwsError("ValidationError", "Features may not change the record identifier",
                       status=400)
    ttl = _ttl_seconds(call.params.get("TtlDuration"))
    if ttl is not None and spec.event_time not in changes:
        raise AwsError("ValidationError", "a TtlDuration needs the EventTime feature among "
                       "the Features", status=400)
    new_time = changes.get(spec.event_time)
    if new_time is not None and as_utc(new_time) < as_utc(current[spec.event_time]):
        raise AwsError("ConflictException", f"EventTime {new_time.isoformat()} is older than "
                       f"the record's {as_utc(current[spec.event_time]).isoformat()}",
                       status=409)
    group.put_record({**current, **changes}, ttl_seconds=ttl)
    return {}


Handler = Callable[[Call], dict[str, Any]]
#: ``sagemaker`` operations (JSON 1.1, ``X-Amz-Target: SageMaker.<Operation>``).
CONTROL_PLANE: dict[str, Handler] = {
    "CreateFeatureGroup": create_feature_group, "DescribeFeatureGroup": describe_feature_group,
    "ListFeatureGroups": list_feature_groups, "DeleteFeatureGroup": delete_feature_group,
    "UpdateFeatureGroup": update_feature_group,
    "DescribeFeatureMetadata": describe_feature_metadata,
    "UpdateFeatureMetadata": update_feature_metadata, "Search": search}
#: ``sagemaker-featurestore-runtime`` operations (rest-json) by (method, path shape).
RUNTIME: dict[tuple[str, str], Handler] = {
    ("PUT", "record"): put_record, ("GET", "record"): get_record,
    ("DELETE", "record"): delete_record, ("POST", "batch-get"): batch_get_record,
    ("POST", "batch-write"): batch_write_record, ("POST", "list"): list_records,
    ("POST", "update"): update_record}
