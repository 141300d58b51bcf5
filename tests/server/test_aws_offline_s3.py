"""A feature group's offline store at its S3 URI, as SageMaker lays it out: boto3 creates a
group with OfflineStoreConfig.S3StorageConfig, PutRecord feeds it, and the group's Delta table
is then listed with boto3's S3 client and read by delta-rs through the same /aws endpoint,
where DescribeFeatureGroup's ResolvedOutputS3Uri says it is."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

import loopworks

from _aws import REGION, aws_keys
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

DEFINITIONS = [{"FeatureName": "review_id", "FeatureType": "String"},
               {"FeatureName": "EventTime", "FeatureType": "Fractional"},
               {"FeatureName": "sentiment", "FeatureType": "Integral"}]


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("offline-s3") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
    with running_server(home, "operator-token") as url:
        key = aws_keys(home, "lead")
        session = boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                        region_name=REGION)
        endpoint = f"{url}/aws"
        yield {"url": url, "key": key, "home": home,
               "sagemaker": session.client("sagemaker", endpoint_url=endpoint),
               "runtime": session.client("sagemaker-featurestore-runtime",
                                         endpoint_url=endpoint),
               "s3": session.client("s3", endpoint_url=endpoint,
                                    config=Config(s3={"addressing_style": "path"}))}


def _create(aws: dict, name: str, uri: str) -> None:
    aws["sagemaker"].create_feature_group(
        FeatureGroupName=name, RecordIdentifierFeatureName="review_id",
        EventTimeFeatureName="EventTime", FeatureDefinitions=DEFINITIONS,
        OnlineStoreConfig={"EnableOnlineStore": True},
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": uri}})


def _put(aws: dict, name: str, ids: range) -> None:
    for i in ids:
        aws["runtime"].put_record(FeatureGroupName=name, Record=[
            {"FeatureName": "review_id", "ValueAsString": f"r{i}"},
            {"FeatureName": "EventTime", "ValueAsString": f"{1714564800 + i}.25"},
            {"FeatureName": "sentiment", "ValueAsString": str(i % 3 - 1)}])


def _resolved(aws: dict, name: str) -> str:
    described = aws["sagemaker"].describe_feature_group(FeatureGroupName=name)
    return described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]


def _keys(aws: dict, uri: str) -> list[str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    pages = aws["s3"].get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + "/", PaginationConfig={"PageSize": 2})
    return [o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", [])]


def _wait_for_history(aws: dict, uri: str, rows: int) -> None:
    from deltalake import DeltaTable

    options = {"AWS_ENDPOINT_URL": f"{aws['url']}/aws", "AWS_ACCESS_KEY_ID": aws["key"][0],
               "AWS_SECRET_ACCESS_KEY": aws["key"][1], "AWS_REGION": REGION,
               "AWS_ALLOW_HTTP": "true"}
    deadline = time.monotonic() + 30
    while True:  # PutRecord's history append follows within a moment
        try:
            table = DeltaTable(uri, storage_options=options).to_pyarrow_table()
            if table.num_rows >= rows:
                break
        except Exception:  # no commit yet: delta-rs finds no table
            table = None
        assert time.monotonic() < deadline, "the history never reached the S3 location"
        time.sleep(0.2)
    assert sorted(table.column("review_id").to_pylist()) == sorted(f"r{i}" for i in range(rows))


def test_the_delta_table_is_at_the_resolved_s3_uri(aws: dict) -> None:
    _create(aws, "reviews-offline", "s3://feature-store/team-a/")
    uri = _resolved(aws, "reviews-offline")
    assert re.fullmatch(r"s3://feature-store/team-a/000000000000/sagemaker/us-east-1/"
                        r"offline-store/reviews-offline-\d+/data", uri), uri
    _put(aws, "reviews-offline", range(5))
    _wait_for_history(aws, uri, 5)  # delta-rs, through /aws, signed with the worker's key
    keys = _keys(aws, uri)
    assert "_delta_log/00000000000000000000.json" in keys
    assert any(k.endswith(".parquet") for k in keys)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    log = aws["s3"].get_object(Bucket=bucket, Key=f"{prefix}/_delta_log/"
                               "00000000000000000000.json")["Body"].read()
    assert b'"commitInfo"' in log or b'"protocol"' in log
    rolled = aws["s3"].list_objects_v2(Bucket=bucket, Prefix=prefix + "/", Delimiter="/")
    assert f"{prefix}/_delta_log/" in [p["Prefix"] for p in rolled["CommonPrefixes"]]
    # Objects of the bucket and files of the table list together, in key order, page by page.
    folder = prefix.rsplit("/", 2)[0]
    for name in ("a-before.txt", "zz-after.txt"):
        aws["s3"].put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=name.encode())
    pages = aws["s3"].get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="team-a/", PaginationConfig={"PageSize": 2})
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert listed == sorted(listed)
    assert listed[0] == f"{folder}/a-before.txt" and listed[-1] == f"{folder}/zz-after.txt"
    assert len(listed) == len(keys) + 2


def test_the_table_is_read_only_over_s3_and_goes_with_its_group(aws: dict) -> None:
    _create(aws, "reviews-locked", "s3://feature-store/locked")
    uri = _resolved(aws, "reviews-locked")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    _put(aws, "reviews-locked", range(2))
    _wait_for_history(aws, uri, 2)
    for attempt in (
            lambda: aws["s3"].put_object(Bucket=bucket, Key=f"{prefix}/_delta_log/x.json",
                                         Body=b"{}"),
            lambda: aws["s3"].delete_object(Bucket=bucket,
                                            Key=f"{prefix}/_delta_log/"
                                                "00000000000000000000.json")):
        with pytest.raises(ClientError) as caught:
            attempt()
        assert caught.value.response["Error"]["Code"] == "AccessDenied"
        assert "reviews-locked" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        aws["s3"].delete_bucket(Bucket=bucket)
    assert caught.value.response["Error"]["Code"] == "BucketNotEmpty"
    aws["s3"].put_object(Bucket=bucket, Key="team-notes.txt", Body=b"beside the table")
    aws["sagemaker"].delete_feature_group(FeatureGroupName="reviews-locked")
    assert _keys(aws, uri) == []
    assert aws["s3"].get_object(Bucket=bucket, Key="team-notes.txt")["Body"].read() \
        == b"beside the table"


def test_an_s3_uri_that_is_not_one_is_refused_and_nothing_is_created(aws: dict) -> None:
    with pytest.raises(ClientError) as caught:
        _create(aws, "reviews-bad-uri", "https://example.com/offline")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "S3Uri" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        aws["sagemaker"].describe_feature_group(FeatureGroupName="reviews-bad-uri")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFound"
