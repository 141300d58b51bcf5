"""boto3, unmodified, against a live `loopworks serve` under /aws: botocore serialises each
request and parses each answer against its bundled service models (sagemaker,
sagemaker-featurestore-runtime, sts), so a wrong shape fails here. Keys come from
`loopworks worker aws-keys`, as a user gets them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import loopworks
from loopworks.cli import main

from _aws import REGION, aws_keys, sign_v4
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

DEFINITIONS = [{"FeatureName": "review_id", "FeatureType": "String"},
               {"FeatureName": "event_time", "FeatureType": "String"},
               {"FeatureName": "sentiment", "FeatureType": "Integral"},
               {"FeatureName": "score", "FeatureType": "Fractional"},
               {"FeatureName": "review_body", "FeatureType": "String"}]


class Aws:
    """boto3 clients signed as one worker, pointed at the server's /aws."""

    def __init__(self, url: str, key: tuple[str, str]) -> None:
        self.url = url
        self.session = boto3.session.Session(aws_access_key_id=key[0],
                                             aws_secret_access_key=key[1],
                                             region_name=REGION)
        config = Config(retries={"max_attempts": 1})
        self.sagemaker = self.session.client("sagemaker", endpoint_url=f"{url}/aws",
                                             config=config)
        self.runtime = self.session.client("sagemaker-featurestore-runtime",
                                           endpoint_url=f"{url}/aws", config=config)
        self.sts = self.session.client("sts", endpoint_url=f"{url}/aws", config=config)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("aws") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
        lw.workforce.add_worker("ann", role="annotator")
        lw.workforce.add_worker("gone", role="admin")
    with running_server(home, "operator-token") as url:
        yield url, home


@pytest.fixture(scope="module")
def lead(server: tuple[str, Path]) -> Aws:
    return Aws(server[0], aws_keys(server[1], "lead"))


def _create(aws: Aws, name: str, **extra: Any) -> str:
    return aws.sagemaker.create_feature_group(
        FeatureGroupName=name, RecordIdentifierFeatureName="review_id",
        EventTimeFeatureName="event_time", FeatureDefinitions=DEFINITIONS,
        OnlineStoreConfig={"EnableOnlineStore": True},
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": "s3://bucket/offline"}},
        RoleArn="arn:aws:iam::000000000000:role/loopworks", Description="reviews", **extra,
    )["FeatureGroupArn"]


def test_caller_identity_is_the_worker(lead: Aws) -> None:
    me = lead.sts.get_caller_identity()
    assert me["Account"] == "000000000000"
    assert me["Arn"] == "arn:aws:iam::000000000000:user/lead"
    assert me["UserId"].startswith("LW")


def test_feature_group_lifecycle_and_records(lead: Aws) -> None:
    arn = _create(lead, "reviews_wire", Tags=[{"Key": "team", "Value": "nlp"}])
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:feature-group/reviews_wire"
    described = lead.sagemaker.describe_feature_group(FeatureGroupName="reviews_wire")
    assert described["FeatureGroupStatus"] == "Created"
    assert described["FeatureDefinitions"] == DEFINITIONS  # as given: String event time
    assert described["OnlineStoreConfig"]["EnableOnlineStore"] is True
    assert described["OfflineStoreConfig"]["S3StorageConfig"]["S3Uri"] == "s3://bucket/offline"
    assert described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    assert isinstance(described["CreationTime"], datetime)

    with pytest.raises(lead.sagemaker.exceptions.ResourceInUse):
        _create(lead, "reviews_wire")

    record = [{"FeatureName": "review_id", "ValueAsString": "r1"},
              {"FeatureName": "event_time", "ValueAsString": "2024-05-01T12:00:00Z"},
              {"FeatureName": "sentiment", "ValueAsString": "1"},
              {"FeatureName": "score", "ValueAsString": "0.75"},
              {"FeatureName": "review_body", "ValueAsString": "Sturdy & light <b>"}]
    lead.runtime.put_record(FeatureGroupName="reviews_wire", Record=record)
    got = lead.runtime.get_record(FeatureGroupName="reviews_wire",
                                  RecordIdentifierValueAsString="r1")
    values = {f["FeatureName"]: f["ValueAsString"] for f in got["Record"]}
    assert values == {"review_id": "r1", "event_time": "2024-05-01T12:00:00.000Z",
                      "sentiment": "1", "score": "0.75", "review_body": "Sturdy & light <b>"}
    some = lead.runtime.get_record(FeatureGroupName="reviews_wire",
                                   RecordIdentifierValueAsString="r1",
                                   FeatureNames=["sentiment"])
    assert some["Record"] == [{"FeatureName": "sentiment", "ValueAsString": "1"}]
    assert "Record" not in lead.runtime.get_record(FeatureGroupName="reviews_wire",
                                                   RecordIdentifierValueAsString="nope")

    batch = lead.runtime.batch_get_record(Identifiers=[
        {"FeatureGroupName": "reviews_wire", "RecordIdentifiersValueAsString": ["r1", "r9"]},
        {"FeatureGroupName": "missing_group", "RecordIdentifiersValueAsString": ["r1"]}])
    assert [r["RecordIdentifierValueAsString"] for r in batch["Records"]] == ["r1"]
    assert batch["Errors"][0]["ErrorCode"] == "ResourceNotFound"
    assert batch["UnprocessedIdentifiers"] == []

    lead.runtime.delete_record(FeatureGroupName="reviews_wire",
                               RecordIdentifierValueAsString="r1",
                               EventTime="2024-05-02T00:00:00Z")
    assert "Record" not in lead.runtime.get_record(FeatureGroupName="reviews_wire",
                                                   RecordIdentifierValueAsString="r1")

    listed = lead.sagemaker.list_feature_groups(NameContains="reviews_wire")
    assert [g["FeatureGroupName"] for g in listed["FeatureGroupSummaries"]] == ["reviews_wire"]
    lead.sagemaker.delete_feature_group(FeatureGroupName="reviews_wire")
    with pytest.raises(lead.sagemaker.exceptions.ResourceNotFound):
        lead.sagemaker.describe_feature_group(FeatureGroupName="reviews_wire")


def test_list_pages_and_sorts(lead: Aws) -> None:
    for name in ("page_c", "page_a", "page_b"):
        _create(lead, name)
    first = lead.sagemaker.list_feature_groups(NameContains="page_", SortBy="Name",
                                               SortOrder="Ascending", MaxResults=2)
    assert [g["FeatureGroupName"] for g in first["FeatureGroupSummaries"]] == ["page_a",
                                                                             "page_b"]
    rest = lead.sagemaker.list_feature_groups(NameContains="page_", SortBy="Name",
                                              SortOrder="Ascending", MaxResults=2,
                                              NextToken=first["NextToken"])
    assert [g["FeatureGroupName"] for g in rest["FeatureGroupSummaries"]] == ["page_c"]
    assert "NextToken" not in rest
    paginator = lead.sagemaker.get_paginator("list_feature_groups")
    names = [g["FeatureGroupName"] for page in paginator.paginate(
        NameContains="page_", PaginationConfig={"PageSize": 1}) for g in
        page["FeatureGroupSummaries"]]
    assert sorted(names) == ["page_a", "page_b", "page_c"]


def test_bad_input_is_a_modelled_error_and_writes_nothing(lead: Aws) -> None:
    _create(lead, "strict_wire")
    base = [{"FeatureName": "review_id", "ValueAsString": "r1"},
            {"FeatureName": "event_time", "ValueAsString": "2024-05-01T12:00:00Z"}]
    for bad, word in (([*base, {"FeatureName": "sentiment", "ValueAsString": "lots"}],
                       "sentiment"),
                      ([*base, {"FeatureName": "colour", "ValueAsString": "red"}], "colour"),
                      ([base[0], {"FeatureName": "event_time", "ValueAsString": "someday"}],
                       "event_time"),
                      ([base[1]], "review_id")):
        with pytest.raises(lead.runtime.exceptions.ValidationError, match=word):
            lead.runtime.put_record(FeatureGroupName="strict_wire", Record=bad)
    assert "Record" not in lead.runtime.get_record(FeatureGroupName="strict_wire",
                                                   RecordIdentifierValueAsString="r1")
    with pytest.raises(lead.runtime.exceptions.ResourceNotFound):
        lead.runtime.put_record(FeatureGroupName="no_such_group", Record=base)
    with pytest.raises(ClientError) as caught:
        lead.sagemaker.create_feature_group(
            FeatureGroupName="bad_event", RecordIdentifierFeatureName="review_id",
            EventTimeFeatureName="event_time",
            FeatureDefinitions=[{"FeatureName": "review_id", "FeatureType": "String"},
                                {"FeatureName": "event_time", "FeatureType": "Integral"}],
            OnlineStoreConfig={"EnableOnlineStore": True})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "event time" in caught.value.response["Error"]["Message"]


def test_unsupported_operations_answer_in_the_models_shape(lead: Aws) -> None:
    with pytest.raises(ClientError) as caught:
        lead.sagemaker.list_training_jobs()
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    with pytest.raises(ClientError) as caught:
        lead.sts.get_session_token()
    assert caught.value.response["Error"]["Code"] == "InvalidAction"


def test_roles_decide_what_a_key_may_do(server: tuple[str, Path], lead: Aws) -> None:
    _create(lead, "guarded_wire")
    ann = Aws(server[0], aws_keys(server[1], "ann"))
    assert ann.sts.get_caller_identity()["Arn"].endswith("user/ann")
    with pytest.raises(ClientError) as caught:
        ann.runtime.get_record(FeatureGroupName="guarded_wire",
                               RecordIdentifierValueAsString="r1")
    assert caught.value.response["Error"]["Code"] == "AccessForbidden"
    with pytest.raises(ClientError) as caught:
        ann.sagemaker.delete_feature_group(FeatureGroupName="guarded_wire")
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    lead.sagemaker.describe_feature_group(FeatureGroupName="guarded_wire")  # still there


def test_signatures_are_checked_as_aws_does(server: tuple[str, Path]) -> None:
    url, home = server
    key_id, secret = aws_keys(home, "gone")
    good = Aws(url, (key_id, secret))
    assert good.sts.get_caller_identity()["UserId"] == key_id
    wrong = Aws(url, (key_id, secret[:-1] + ("A" if secret[-1] != "A" else "B")))
    with pytest.raises(ClientError) as caught:
        wrong.sagemaker.list_feature_groups()
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(ClientError) as caught:
        wrong.sts.get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    unknown = Aws(url, ("LW" + "A" * 18, secret))
    with pytest.raises(ClientError) as caught:
        unknown.sagemaker.list_feature_groups()
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"

    # Revoked: the same pair stops working at once.
    revoked = CliRunner().invoke(main, ["worker", "aws-keys", "gone", "--revoke", key_id,
                                        "--home", str(home)])
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(ClientError) as caught:
        good.sts.get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "InvalidClientTokenId"


def _signed(url: str, key: tuple[str, str], body: bytes, *, when: datetime,
            service: str = "sagemaker", sign_body: bytes | None = None,
            target: str = "SageMaker.ListFeatureGroups", method: str = "POST",
            path: str = "/aws/") -> httpx.Response:
    """A JSON 1.1 request signed by hand, the test choosing clock, scope, body and operation."""
    headers = {"content-type": "application/x-amz-json-1.1"}
    if target:
        headers["x-amz-target"] = target
    return sign_v4(url, key, method=method, path=path, headers=headers, body=body,
                   service=service, when=when, signed_body=sign_body)


def test_clock_scope_and_body_are_part_of_the_signature(server: tuple[str, Path]) -> None:
    url, home = server
    key = aws_keys(home, "lead")
    now = datetime.now(UTC)
    assert _signed(url, key, b"{}", when=now).status_code == 200
    late = _signed(url, key, b"{}", when=datetime.fromtimestamp(time.time() - 20 * 60, UTC))
    assert late.status_code == 403
    assert late.json()["__type"] == "InvalidSignatureException"
    assert "Signature expired" in late.json()["message"]
    other = _signed(url, key, b"{}", when=now, service="s3")
    assert other.json()["__type"] == "InvalidSignatureException"
    assert "scoped to correct service" in other.json()["message"]
    tampered = _signed(url, key, b'{"MaxResults": 1}', when=now, sign_body=b"{}")
    assert tampered.status_code == 403
    assert tampered.json()["__type"] == "InvalidSignatureException"
    unsigned = httpx.post(f"{url}/aws/", content=b"{}", headers={
        "x-amz-target": "SageMaker.ListFeatureGroups"})
    assert unsigned.json()["__type"] == "MissingAuthenticationTokenException"
    garbage = _signed(url, key, b"{not json", when=now)
    assert garbage.status_code == 400 and garbage.json()["__type"] == "SerializationException"
    huge = httpx.post(f"{url}/aws/", content=b"x" * (17 << 20), headers={
        "x-amz-target": "SageMaker.ListFeatureGroups"})
    assert huge.status_code == 413
    assert json.loads(huge.content)["__type"] == "ValidationException"


def test_every_operation_of_the_models_is_routed_or_refused_in_shape(
        server: tuple[str, Path]) -> None:
    """Each operation botocore knows for these services reaches its handler, or gets the
    UnknownOperationException shape: never a framework error page or a 500."""
    import botocore.session

    from loopworks.server.aws import CONTROL_PLANE

    url, home = server
    key = aws_keys(home, "lead")
    now = datetime.now(UTC)
    models = botocore.session.get_session()
    for operation in models.get_service_model("sagemaker").operation_names:
        reply = _signed(url, key, b"{}", when=now, target=f"SageMaker.{operation}")
        kind = reply.json().get("__type")
        if operation in CONTROL_PLANE:
            assert kind != "UnknownOperationException", operation
        else:
            assert reply.status_code == 400 and kind == "UnknownOperationException", operation
    runtime = models.get_service_model("sagemaker-featurestore-runtime")
    supported = {"PutRecord", "GetRecord", "DeleteRecord", "BatchGetRecord",
                 "BatchWriteRecord", "ListRecords", "UpdateRecord"}
    for operation in runtime.operation_names:
        http = runtime.operation_model(operation).http
        path = "/aws" + http["requestUri"].replace("{FeatureGroupName}", "some_group")
        reply = _signed(url, key, b"{}", when=now, target="", method=http["method"],
                        path=path)
        assert reply.status_code < 500, (operation, reply.text)
        kind = reply.headers.get("x-amzn-ErrorType")
        if operation in supported:
            assert kind != "UnknownOperationException", (operation, reply.text)
        else:
            assert kind == "UnknownOperationException", (operation, reply.text)


def test_sagemaker_style_names_and_epoch_event_times(lead: Aws) -> None:
    name = "reviews-feature-group-1629336103"
    definitions = [{"FeatureName": "review_id", "FeatureType": "String"},
                   {"FeatureName": "EventTime", "FeatureType": "Fractional"},
                   {"FeatureName": "input_ids", "FeatureType": "Integral",
                    "CollectionType": "Vector",
                    "CollectionConfig": {"VectorConfig": {"Dimension": 4}}}]
    lead.sagemaker.create_feature_group(
        FeatureGroupName=name, RecordIdentifierFeatureName="review_id",
        EventTimeFeatureName="EventTime", FeatureDefinitions=definitions,
        OnlineStoreConfig={"EnableOnlineStore": True,
                           "TtlDuration": {"Unit": "Days", "Value": 30}})
    described = lead.sagemaker.describe_feature_group(FeatureGroupName=name)
    assert described["FeatureDefinitions"] == definitions
    assert described["OnlineStoreConfig"]["TtlDuration"] == {"Unit": "Days", "Value": 30}
    assert "OfflineStoreConfig" not in described  # online only, as created
    lead.runtime.put_record(FeatureGroupName=name, Record=[
        {"FeatureName": "review_id", "ValueAsString": "r1"},
        {"FeatureName": "EventTime", "ValueAsString": str(time.time())},
        {"FeatureName": "input_ids", "ValueAsStringList": ["101", "2023", "102", "0"]}])
    got = lead.runtime.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="r1")
    values = {f["FeatureName"]: f.get("ValueAsString", f.get("ValueAsStringList"))
              for f in got["Record"]}
    assert values["input_ids"] == ["101", "2023", "102", "0"]
    assert abs(float(values["EventTime"]) - time.time()) < 60
    assert "ExpiresAt" not in got  # only when asked for
    timed = lead.runtime.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="r1",
                                    ExpirationTimeResponse="Enabled")
    expires = datetime.fromisoformat(timed["ExpiresAt"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (time.time() + 30 * 86400)) < 120
    lead.runtime.put_record(FeatureGroupName=name, TtlDuration={"Unit": "Hours", "Value": 1},
                            Record=[{"FeatureName": "review_id", "ValueAsString": "r2"},
                                    {"FeatureName": "EventTime",
                                     "ValueAsString": str(time.time())},
                                    {"FeatureName": "input_ids",
                                     "ValueAsStringList": ["1", "2", "3", "4"]}])
    timed = lead.runtime.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="r2",
                                    ExpirationTimeResponse="Enabled")
    expires = datetime.fromisoformat(timed["ExpiresAt"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (time.time() + 3600)) < 120


@pytest.mark.parametrize("variables", ["one endpoint", "per service"])
def test_readme_example_runs_against_the_server(server: tuple[str, Path],
                                                variables: str) -> None:
    """The README's "Coming from SageMaker" block, with the two variables set as it says,
    or with the per-service ones (AWS_ENDPOINT_URL_<SERVICE>), which win over a global
    AWS_ENDPOINT_URL that here points nowhere."""
    import os
    import re
    import subprocess
    import sys

    url, home = server
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Coming from SageMaker", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    key_id, secret = aws_keys(home, "lead")
    env = dict(os.environ, AWS_ENDPOINT_URL=f"{url}/aws", AWS_DEFAULT_REGION=REGION,
               AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
    if variables == "per service":
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9/nothing-listens-here"
        for service in ("SAGEMAKER", "SAGEMAKER_FEATURESTORE_RUNTIME", "STS"):
            env[f"AWS_ENDPOINT_URL_{service}"] = f"{url}/aws"
        code = code.replace("reviews-feature-group-", "reviews-per-service-")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1", "arn:aws:iam::000000000000:user/lead"]


def test_update_metadata_and_search(lead: Aws) -> None:
    _create(lead, "searchable-wire", Tags=[{"Key": "team", "Value": "nlp"}])
    _create(lead, "other-wire", Tags=[{"Key": "team", "Value": "vision"}])
    lead.sagemaker.update_feature_group(
        FeatureGroupName="searchable-wire",
        FeatureAdditions=[{"FeatureName": "helpful_votes", "FeatureType": "Integral"}],
        OnlineStoreConfig={"TtlDuration": {"Unit": "Hours", "Value": 6}})
    described = lead.sagemaker.describe_feature_group(FeatureGroupName="searchable-wire")
    assert described["FeatureDefinitions"][-1] == {"FeatureName": "helpful_votes",
                                                   "FeatureType": "Integral"}
    assert described["OnlineStoreConfig"]["TtlDuration"] == {"Unit": "Hours", "Value": 6}

    lead.sagemaker.update_feature_metadata(
        FeatureGroupName="searchable-wire", FeatureName="sentiment",
        Description="-1, 0 or 1 from the star rating",
        ParameterAdditions=[{"Key": "owner", "Value": "nlp"}, {"Key": "pii", "Value": "no"}])
    lead.sagemaker.update_feature_metadata(FeatureGroupName="searchable-wire",
                                           FeatureName="sentiment", ParameterRemovals=["pii"])
    meta = lead.sagemaker.describe_feature_metadata(FeatureGroupName="searchable-wire",
                                                    FeatureName="sentiment")
    assert meta["Description"] == "-1, 0 or 1 from the star rating"
    assert meta["Parameters"] == [{"Key": "owner", "Value": "nlp"}]
    assert meta["FeatureType"] == "Integral"
    with pytest.raises(lead.sagemaker.exceptions.ResourceNotFound):
        lead.sagemaker.describe_feature_metadata(FeatureGroupName="searchable-wire",
                                                 FeatureName="colour")

    by_tag = lead.sagemaker.search(Resource="FeatureGroup", SearchExpression={
        "Filters": [{"Name": "Tags.team", "Operator": "Equals", "Value": "nlp"}]})
    assert [r["FeatureGroup"]["FeatureGroupName"] for r in by_tag["Results"]] == [
        "searchable-wire"]
    nested = lead.sagemaker.search(Resource="FeatureGroup", SearchExpression={
        "NestedFilters": [{"NestedPropertyName": "FeatureDefinitions", "Filters": [
            {"Name": "FeatureDefinitions.FeatureName", "Value": "helpful_votes"}]}]})
    assert [r["FeatureGroup"]["FeatureGroupName"] for r in nested["Results"]] == [
        "searchable-wire"]
    either = lead.sagemaker.search(Resource="FeatureGroup", SortBy="FeatureGroupName",
                                   SortOrder="Ascending", MaxResults=1, SearchExpression={
        "Operator": "Or", "Filters": [
            {"Name": "FeatureGroupName", "Value": "other-wire"},
            {"Name": "FeatureGroupName", "Operator": "Contains", "Value": "SEARCHABLE"}]})
    assert [r["FeatureGroup"]["FeatureGroupName"] for r in either["Results"]] == ["other-wire"]
    assert either["TotalHits"] == {"Value": 2, "Relation": "EqualTo"}
    second = lead.sagemaker.search(Resource="FeatureGroup", SortBy="FeatureGroupName",
                                   SortOrder="Ascending", MaxResults=1,
                                   NextToken=either["NextToken"], SearchExpression={
        "Operator": "Or", "Filters": [
            {"Name": "FeatureGroupName", "Value": "other-wire"},
            {"Name": "FeatureGroupName", "Operator": "Contains", "Value": "SEARCHABLE"}]})
    assert [r["FeatureGroup"]["FeatureGroupName"] for r in second["Results"]] == [
        "searchable-wire"]
    features = lead.sagemaker.search(Resource="FeatureMetadata", SearchExpression={
        "Filters": [{"Name": "Parameters.owner", "Value": "nlp"}]})
    assert [(r["FeatureMetadata"]["FeatureGroupName"], r["FeatureMetadata"]["FeatureName"])
            for r in features["Results"]] == [("searchable-wire", "sentiment")]
    recent = lead.sagemaker.search(Resource="FeatureGroup", SearchExpression={"Filters": [
        {"Name": "CreationTime", "Operator": "GreaterThan", "Value": "2020-01-01T00:00:00Z"},
        {"Name": "FeatureGroupName", "Operator": "In", "Value": "other-wire,nope"}]})
    assert [r["FeatureGroup"]["FeatureGroupName"] for r in recent["Results"]] == ["other-wire"]
    with pytest.raises(ClientError) as caught:
        lead.sagemaker.search(Resource="TrainingJob")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_batch_write_list_and_update_records(lead: Aws) -> None:
    _create(lead, "bulk-wire")

    def record(rid: str, when: str, sentiment: str) -> list[dict[str, str]]:
        return [{"FeatureName": "review_id", "ValueAsString": rid},
                {"FeatureName": "event_time", "ValueAsString": when},
                {"FeatureName": "sentiment", "ValueAsString": sentiment}]

    written = lead.runtime.batch_write_record(Entries=[
        {"FeatureGroupName": "bulk-wire", "Record": record(f"r{i}", "2024-05-01T00:00:00Z",
                                                           "1")} for i in range(5)] + [
        {"FeatureGroupName": "bulk-wire", "Record": record("bad", "2024-05-01T00:00:00Z",
                                                           "many")},
        {"FeatureGroupName": "no-such-group", "Record": record("x", "2024-05-01", "1")}])
    assert [e["ErrorCode"] for e in written["Errors"]] == ["ValidationError",
                                                           "ResourceNotFound"]
    assert written["Errors"][0]["Entry"]["Record"][0]["ValueAsString"] == "bad"
    assert written["UnprocessedEntries"] == []

    first = lead.runtime.list_records(FeatureGroupName="bulk-wire", MaxResults=3)
    assert first["RecordIdentifiers"] == ["r0", "r1", "r2"]
    rest = lead.runtime.list_records(FeatureGroupName="bulk-wire", MaxResults=3,
                                     NextToken=first["NextToken"])
    assert rest["RecordIdentifiers"] == ["r3", "r4"] and "NextToken" not in rest

    lead.runtime.update_record(FeatureGroupName="bulk-wire", RecordIdentifierValueAsString="r1",
                               Features=[{"FeatureName": "sentiment", "ValueAsString": "-1"}])
    got = lead.runtime.get_record(FeatureGroupName="bulk-wire",
                                  RecordIdentifierValueAsString="r1")
    values = {f["FeatureName"]: f["ValueAsString"] for f in got["Record"]}
    assert values["sentiment"] == "-1"
    assert values["event_time"] == "2024-05-01T00:00:00.000Z"  # kept
    with pytest.raises(lead.runtime.exceptions.ConflictException):
        lead.runtime.update_record(
            FeatureGroupName="bulk-wire", RecordIdentifierValueAsString="r1",
            Features=[{"FeatureName": "event_time", "ValueAsString": "2023-01-01T00:00:00Z"},
                      {"FeatureName": "sentiment", "ValueAsString": "0"}])
    with pytest.raises(lead.runtime.exceptions.ResourceNotFound):
        lead.runtime.update_record(FeatureGroupName="bulk-wire",
                                   RecordIdentifierValueAsString="r99",
                                   Features=[{"FeatureName": "sentiment", "ValueAsString": "0"}])
    lead.runtime.delete_record(FeatureGroupName="bulk-wire", RecordIdentifierValueAsString="r0",
                               EventTime="2024-06-01T00:00:00Z")
    live = lead.runtime.list_records(FeatureGroupName="bulk-wire")["RecordIdentifiers"]
    assert live == ["r1", "r2", "r3", "r4"]
    every = lead.runtime.list_records(FeatureGroupName="bulk-wire",
                                      IncludeSoftDeletedRecords=True)["RecordIdentifiers"]
    assert every == ["r0", "r1", "r2", "r3", "r4"]


def _record(i: int) -> list[dict[str, str]]:
    return [{"FeatureName": "review_id", "ValueAsString": f"t{i}"},
            {"FeatureName": "event_time", "ValueAsString": f"2024-05-0{i}T10:00:00Z"},
            {"FeatureName": "sentiment", "ValueAsString": "1"}]


def _listed(aws: Aws, name: str) -> list[str]:
    return aws.runtime.list_records(FeatureGroupName=name)["RecordIdentifiers"]


def test_target_stores_and_groups_with_one_store(lead: Aws) -> None:
    """A group writes only the stores it has; TargetStores narrows a write or a delete to
    one of them, and naming a store the group lacks is a ValidationError."""
    common = {"RecordIdentifierFeatureName": "review_id", "EventTimeFeatureName": "event_time",
              "FeatureDefinitions": DEFINITIONS}
    offline = {"S3StorageConfig": {"S3Uri": "s3://stores/offline"}}
    lead.sagemaker.create_feature_group(FeatureGroupName="online-only",
                                        OnlineStoreConfig={"EnableOnlineStore": True}, **common)
    lead.sagemaker.create_feature_group(FeatureGroupName="offline-only",
                                        OfflineStoreConfig=offline, **common)
    lead.sagemaker.create_feature_group(FeatureGroupName="both-stores", OfflineStoreConfig=offline,
                                        OnlineStoreConfig={"EnableOnlineStore": True}, **common)

    lead.runtime.put_record(FeatureGroupName="online-only", Record=_record(1))
    assert lead.runtime.get_record(FeatureGroupName="online-only",
                                   RecordIdentifierValueAsString="t1")["Record"]
    assert _listed(lead, "online-only") == []  # no history: the group has no offline store

    lead.runtime.put_record(FeatureGroupName="offline-only", Record=_record(1))
    assert _listed(lead, "offline-only") == ["t1"]
    with pytest.raises(ClientError) as caught:
        lead.runtime.get_record(FeatureGroupName="offline-only",
                                RecordIdentifierValueAsString="t1")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "no online store" in caught.value.response["Error"]["Message"]
    batch = lead.runtime.batch_get_record(Identifiers=[
        {"FeatureGroupName": "offline-only", "RecordIdentifiersValueAsString": ["t1"]}])
    assert batch["Records"] == [] and batch["Errors"][0]["ErrorCode"] == "ValidationError"
    with pytest.raises(ClientError) as caught:
        lead.runtime.put_record(FeatureGroupName="offline-only", Record=_record(2),
                                TargetStores=["OnlineStore"])
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "no online store" in caught.value.response["Error"]["Message"]

    lead.runtime.put_record(FeatureGroupName="both-stores", Record=_record(1),
                            TargetStores=["OnlineStore"])
    lead.runtime.put_record(FeatureGroupName="both-stores", Record=_record(2),
                            TargetStores=["OfflineStore"])
    lead.runtime.put_record(FeatureGroupName="both-stores", Record=_record(3))
    got = {i: "Record" in lead.runtime.get_record(FeatureGroupName="both-stores",
                                                  RecordIdentifierValueAsString=f"t{i}")
           for i in (1, 2, 3)}
    assert got == {1: True, 2: False, 3: True}
    assert _listed(lead, "both-stores") == ["t2", "t3"]
    lead.runtime.delete_record(FeatureGroupName="both-stores", RecordIdentifierValueAsString="t3",
                               EventTime="2024-06-01T00:00:00Z", TargetStores=["OnlineStore"])
    assert "Record" not in lead.runtime.get_record(FeatureGroupName="both-stores",
                                                   RecordIdentifierValueAsString="t3")
    assert _listed(lead, "both-stores") == ["t2", "t3"]  # no tombstone in the history
    lead.runtime.delete_record(FeatureGroupName="both-stores", RecordIdentifierValueAsString="t2",
                               EventTime="2024-06-01T00:00:00Z", TargetStores=["OfflineStore"])
    assert _listed(lead, "both-stores") == ["t3"]
    with pytest.raises(ClientError) as caught:
        lead.runtime.put_record(FeatureGroupName="both-stores", Record=_record(4),
                                TargetStores=["ColdStore"])
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "ColdStore" in caught.value.response["Error"]["Message"]
