"""The SageMaker Python SDK, unmodified, against a live `loopworks serve`: only the
environment says where AWS is (AWS_ENDPOINT_URL and a worker's key pair)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import loopworks

from _aws import sdk_env
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
    with running_server(home, "operator-token") as url:
        env = sdk_env(url, (key_id, secret), tmp_path)
        done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                              text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if not line.startswith("sagemaker.")]
    assert printed == ["Created", "0", "60", "loopworks-sdk",
                       "s3://loopworks-sdk/sdk/hello.csv"]
    assert "telemetry" not in done.stderr.lower()


PROCESSING = '''
import boto3
import sagemaker
from sagemaker.processing import ProcessingInput, ProcessingOutput
from sagemaker.sklearn.processing import SKLearnProcessor

session = sagemaker.Session(boto_session=boto3.Session(), default_bucket="loopworks-sdk")
session.default_bucket()  # made when missing, as on AWS
for i in range(5):
    session.upload_string_as_file_body(f"review {i}", "loopworks-sdk", f"reviews/r{i}.txt")
processor = SKLearnProcessor(framework_version="1.2-1", role="arn:aws:iam::000000000000:role/x",
                             instance_type="ml.m5.xlarge", instance_count=2,
                             sagemaker_session=session, base_job_name="sdk-features")
processor.run(code=CODE, arguments=["--suffix", "done"], wait=True, logs=False,
              inputs=[ProcessingInput(source="s3://loopworks-sdk/reviews/",
                                      destination="/opt/ml/processing/input/reviews",
                                      s3_data_distribution_type="ShardedByS3Key")],
              outputs=[ProcessingOutput(source="/opt/ml/processing/output/features",
                                        destination="s3://loopworks-sdk/features")])
print(processor.jobs[-1].describe()["ProcessingJobStatus"])
s3 = boto3.client("s3")
for key in sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket="loopworks-sdk", Prefix="features/")["Contents"]):
    print(key, s3.get_object(Bucket="loopworks-sdk", Key=key)["Body"].read().decode())
'''
# The user's script, as SageMaker's examples write them (our own).
FEATURES = '''
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--suffix")
args = parser.parse_args()
host = json.load(open("/opt/ml/config/resourceconfig.json"))["current_host"]
names = sorted(os.listdir("/opt/ml/processing/input/reviews"))
with open(f"/opt/ml/processing/output/features/{host}.txt", "w") as out:
    out.write(" ".join(names) + " " + args.suffix)
'''


def test_sklearn_processor_runs_a_script_unchanged(tmp_path: Path) -> None:
    """SKLearnProcessor.run(code=..., inputs=..., outputs=..., arguments=...), unmodified:
    the SDK uploads the script, sends CreateProcessingJob and waits on Describe."""
    home = tmp_path / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
        key_id, secret = lw.access_keys.issue("lead")
    code = tmp_path / "features.py"
    code.write_text(FEATURES)
    with running_server(home, "operator-token") as url:
        env = sdk_env(url, (key_id, secret), tmp_path)
        done = subprocess.run([sys.executable, "-c", f"CODE = {str(code)!r}\n" + PROCESSING],
                              env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if not line.startswith("sagemaker.")]
    assert printed[0].lstrip(".!") == "Completed"  # after the SDK's wait dots
    shares = {line.split()[0]: line.split()[1:-1] for line in printed[1:]}
    assert list(shares) == ["features/algo-1.txt", "features/algo-2.txt"]
    first, second = shares.values()
    assert sorted(first + second) == [f"r{i}.txt" for i in range(5)] and not set(first) & \
        set(second)
    assert all(line.endswith(" done") for line in printed[1:])
