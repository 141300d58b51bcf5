"""The SageMaker Python SDK, unmodified, against a live `loopworks serve`: only the
environment says where AWS is (AWS_ENDPOINT_URL and a worker's key pair)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import loopworks

from conftest import running_server

pytest.importorskip("sagemaker", reason="the SageMaker SDK is in the dev extra")

SCRIPT = '''
import time

import boto3
import pandas as pd
import sagemaker
from sagemaker.feature_store.feature_group import FeatureGroup

# The SDK asks STS for the account at an endpoint of its own making, which the environment
# does not redirect: name the default bucket instead (what SageMaker users on VPCs do too).
session = sagemaker.Session(boto_session=boto3.Session(), default_bucket="loopworks-sdk")
frame = pd.DataFrame({
    "review_id": pd.array([f"r{i}" for i in range(60)], dtype="string"),
    "sentiment": [i % 3 - 1 for i in range(60)],
    "review_body": pd.array(["Sturdy and light."] * 60, dtype="string"),
    "EventTime": [float(time.time())] * 60})
name = f"reviews-feature-group-{int(time.time())}"
group = FeatureGroup(name=name, sagemaker_session=session)
group.load_feature_definitions(data_frame=frame)
group.create(s3_uri="s3://loopworks-bucket/offline", record_identifier_name="review_id",
             event_time_feature_name="EventTime",
             role_arn="arn:aws:iam::000000000000:role/loopworks", enable_online_store=True)
print(group.describe()["FeatureGroupStatus"])
group.ingest(data_frame=frame, max_workers=3, wait=True)
runtime = boto3.client("sagemaker-featurestore-runtime")
record = runtime.get_record(FeatureGroupName=name, RecordIdentifierValueAsString="r7")
print({f["FeatureName"]: f["ValueAsString"] for f in record["Record"]}["sentiment"])
print(len(runtime.list_records(FeatureGroupName=name, MaxResults=100)["RecordIdentifiers"]))
print(session.default_bucket())  # S3 head/create of the bucket
print(session.upload_string_as_file_body("a,b", session.default_bucket(), "sdk/hello.csv"))
'''


def test_feature_group_create_ingest_and_read_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
        key_id, secret = lw.access_keys.issue("lead")
    config = tmp_path / "sagemaker.yaml"  # no telemetry calls to AWS from a test
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
                      "      TelemetryOptOut: true\n")
    with running_server(home, "operator-token") as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=f"{url}/aws", AWS_DEFAULT_REGION="us-east-1",
                   AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
                   SAGEMAKER_USER_CONFIG_OVERRIDE=str(config),
                   SAGEMAKER_SUPPRESS_V2_WARNING="1", HOME=str(tmp_path))
        done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                              text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if not line.startswith("sagemaker.")]
    assert printed == ["Created", "0", "60", "loopworks-sdk",
                       "s3://loopworks-sdk/sdk/hello.csv"]
    assert "telemetry" not in done.stderr.lower()
