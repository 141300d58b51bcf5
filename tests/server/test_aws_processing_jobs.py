"""SageMaker Processing over boto3 (issue 16): a script written the SageMaker way (inputs
under /opt/ml/processing/input, outputs under /opt/ml/processing/output, its own boto3 calls)
runs unchanged through CreateProcessingJob on 2 instances, locally and as Ray tasks: shards
disjoint and complete, outputs uploaded, the script's PutRecord calls in the feature store.
A failing instance fails the job with its stderr; MaxRuntimeInSeconds and StopProcessingJob
stop every instance; bad specifications are refused naming the field."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import loopworks

from _aws import aws_keys, clients
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from botocore.exceptions import ClientError  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/processing"
# Our own feature script, in the shape SageMaker's examples use.
SCRIPT = '''
import argparse, csv, json, os, sys, time
import boto3

parser = argparse.ArgumentParser()
parser.add_argument("--group", required=True)
parser.add_argument("--fail-on", default="")
parser.add_argument("--sleep", type=float, default=0)
args = parser.parse_args()
config = json.load(open("/opt/ml/config/resourceconfig.json"))
host = config["current_host"]
print("starting", host, "of", config["hosts"], flush=True)
if args.sleep:
    time.sleep(args.sleep)
if host == args.fail_on:
    print("cannot read the reviews: bad encoding", file=sys.stderr)
    sys.exit(2)
runtime = boto3.client("sagemaker-featurestore-runtime")
folder = "/opt/ml/processing/input/reviews"
os.makedirs("/opt/ml/processing/output/features", exist_ok=True)
with open(f"/opt/ml/processing/output/features/{host}.csv", "w", newline="") as out:
    writer = csv.writer(out)
    writer.writerow(["review_id", "length", "host"])
    for name in sorted(os.listdir(folder)):
        text = open(os.path.join(folder, name)).read()
        review_id = name.removesuffix(".txt")
        writer.writerow([review_id, len(text), host])
        runtime.put_record(FeatureGroupName=args.group, Record=[
            {"FeatureName": "review_id", "ValueAsString": review_id},
            {"FeatureName": "length", "ValueAsString": str(len(text))},
            {"FeatureName": "event_time", "ValueAsString": "2026-12-01T00:00:00Z"}])
print("done", host, flush=True)
'''
REVIEWS = {f"r{i}": f"Review {i}: " + "great fit " * i for i in range(1, 8)}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("processing") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
    with running_server(home, "operator-token") as url:
        sm, s3, runtime = clients(url, aws_keys(home, "lead"), "sagemaker", "s3",
                                  "sagemaker-featurestore-runtime")
        s3.create_bucket(Bucket="proc")
        s3.put_object(Bucket="proc", Key="code/features.py", Body=SCRIPT.encode())
        for review_id, text in REVIEWS.items():
            s3.put_object(Bucket="proc", Key=f"reviews/{review_id}.txt", Body=text.encode())
        yield {"url": url, "home": home, "sm": sm, "s3": s3, "runtime": runtime}


def _group(aws: dict, name: str) -> None:
    aws["sm"].create_feature_group(
        FeatureGroupName=name, RecordIdentifierFeatureName="review_id",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=[{"FeatureName": "review_id", "FeatureType": "String"},
                            {"FeatureName": "length", "FeatureType": "Integral"},
                            {"FeatureName": "event_time", "FeatureType": "String"}],
        OnlineStoreConfig={"EnableOnlineStore": True})


def _request(name: str, arguments: list[str], *, instances: int = 2, runtime: int = 600,
             environment: dict | None = None, **changes) -> dict:
    """What SKLearnProcessor.run(code=..., inputs=..., outputs=..., arguments=...) sends."""
    request = {
        "ProcessingJobName": name, "RoleArn": ROLE,
        "ProcessingInputs": [
            {"InputName": "reviews", "AppManaged": False, "S3Input": {
                "S3Uri": "s3://proc/reviews", "LocalPath": "/opt/ml/processing/input/reviews",
                "S3DataType": "S3Prefix", "S3InputMode": "File",
                "S3DataDistributionType": "ShardedByS3Key", "S3CompressionType": "None"}},
            {"InputName": "code", "AppManaged": False, "S3Input": {
                "S3Uri": "s3://proc/code/features.py",
                "LocalPath": "/opt/ml/processing/input/code", "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "features", "S3Output": {
            "S3Uri": f"s3://proc/out/{name}", "LocalPath": "/opt/ml/processing/output/features",
            "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": instances,
                                                  "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "StoppingCondition": {"MaxRuntimeInSeconds": runtime},
        "AppSpecification": {
            "ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/features.py"],
            "ContainerArguments": arguments},
        "Environment": environment or {"STAGE": "test"}}
    request.update(changes)
    return request


def _finished(aws: dict, name: str, limit: float = 120) -> dict:
    deadline = time.monotonic() + limit
    while True:
        described = aws["sm"].describe_processing_job(ProcessingJobName=name)
        if described["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return described
        assert time.monotonic() < deadline, described
        time.sleep(0.2)


def _code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return caught.value.response["Error"]["Code"]


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_sagemaker_script_runs_unchanged_on_two_instances(aws: dict, engine: str) -> None:
    if engine == "ray":
        pytest.importorskip("ray")
    name, group = f"features-{engine}", f"lengths_{engine}"
    _group(aws, group)
    environment = {"STAGE": "test"} | ({"LW_ENGINE": "ray"} if engine == "ray" else {})
    arn = aws["sm"].create_processing_job(**_request(
        name, ["--group", group], environment=environment))["ProcessingJobArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:000000000000:processing-job/{name}"
    described = _finished(aws, name)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    assert described["AppSpecification"]["ContainerArguments"] == ["--group", group]
    assert described["ProcessingEndTime"] >= described["ProcessingStartTime"]

    listed = aws["s3"].list_objects_v2(Bucket="proc", Prefix=f"out/{name}/")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == [f"out/{name}/algo-1.csv", f"out/{name}/algo-2.csv"]
    shares = {}
    for key in keys:
        rows = aws["s3"].get_object(Bucket="proc", Key=key)["Body"].read().decode().split()
        shares[key] = {row.split(",")[0] for row in rows[1:]}
    first, second = shares.values()
    assert first and second and not first & second  # disjoint...
    assert first | second == set(REVIEWS)  # ...and complete
    for review_id, text in REVIEWS.items():  # the script's own PutRecord calls landed here
        record = aws["runtime"].get_record(FeatureGroupName=group,
                                           RecordIdentifierValueAsString=review_id)["Record"]
        assert {"FeatureName": "length", "ValueAsString": str(len(text))} in record


def test_a_failing_instance_fails_the_job_with_its_stderr(aws: dict) -> None:
    _group(aws, "lengths_fail")
    aws["sm"].create_processing_job(**_request(
        "fails-on-two", ["--group", "lengths_fail", "--fail-on", "algo-2"]))
    described = _finished(aws, "fails-on-two")
    assert described["ProcessingJobStatus"] == "Failed"
    assert "algo-2 exited with code 2" in described["FailureReason"]
    assert "bad encoding" in described["FailureReason"]
    assert not aws["s3"].list_objects_v2(Bucket="proc", Prefix="out/fails-on-two/").get(
        "Contents")  # nothing uploaded from a failed job
    with loopworks.open(aws["home"]) as lw:
        log = lw.processing_jobs.log_path("fails-on-two", "algo-2").read_text()
    assert "starting algo-2" in log and "bad encoding" in log


def test_max_runtime_and_stop_end_every_instance(aws: dict) -> None:
    sm = aws["sm"]
    _group(aws, "lengths_slow")
    sm.create_processing_job(**_request("too-slow", ["--group", "lengths_slow",
                                                     "--sleep", "120"], runtime=1))
    described = _finished(aws, "too-slow")
    assert described["ProcessingJobStatus"] == "Stopped"
    assert "MaxRuntimeInSeconds" in described["FailureReason"]

    sm.create_processing_job(**_request("to-stop", ["--group", "lengths_slow",
                                                    "--sleep", "120"]))
    with loopworks.open(aws["home"]) as lw:
        log = lw.processing_jobs.log_path("to-stop", "algo-2")
        deadline = time.monotonic() + 60
        while "starting" not in (log.read_text() if log.is_file() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    sm.stop_processing_job(ProcessingJobName="to-stop")
    described = _finished(aws, "to-stop")
    assert described["ProcessingJobStatus"] == "Stopped"
    with pytest.raises(ClientError) as caught:
        sm.stop_processing_job(ProcessingJobName="to-stop")
    assert _code(caught) == "ValidationException"
    names = [s["ProcessingJobName"] for s in sm.list_processing_jobs(
        StatusEquals="Stopped", SortBy="Name", SortOrder="Ascending")[
        "ProcessingJobSummaries"]]
    assert names == ["to-stop", "too-slow"]


def test_bad_specifications_are_refused_naming_the_field(aws: dict) -> None:
    sm = aws["sm"]

    def refused(**changes) -> str:
        request = _request("bad-spec", ["--group", "x"])
        for path, value in changes.items():
            target = request
            *parents, last = path.split(".")
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            target[last] = value
        with pytest.raises(ClientError) as caught:
            sm.create_processing_job(**request)
        assert _code(caught) == "ValidationException"
        return caught.value.response["Error"]["Message"]

    assert "S3InputMode 'Pipe'" in refused(**{"ProcessingInputs.0.S3Input.S3InputMode": "Pipe"})
    assert "ProcessingInputs[0].LocalPath" in refused(
        **{"ProcessingInputs.0.S3Input.LocalPath": "/tmp/reviews"})
    assert "ProcessingInputs[0].LocalPath" in refused(
        **{"ProcessingInputs.0.S3Input.LocalPath": "/opt/ml/processing/../../etc"})
    assert "S3DataDistributionType" in refused(
        **{"ProcessingInputs.0.S3Input.S3DataDistributionType": "Everywhere"})
    assert "ProcessingInputs[0].S3Input.S3Uri: no objects under" in refused(
        **{"ProcessingInputs.0.S3Input.S3Uri": "s3://proc/nothing-here"})
    assert "ContainerEntrypoint is required" in refused(
        AppSpecification={"ImageUri": "some/image:1"})
    with pytest.raises(ClientError) as caught:
        sm.describe_processing_job(ProcessingJobName="bad-spec")  # nothing was recorded
    assert _code(caught) == "ResourceNotFound"
    _group(aws, "lengths_twice")
    sm.create_processing_job(**_request("twice", ["--group", "lengths_twice"]))
    with pytest.raises(ClientError) as caught:
        sm.create_processing_job(**_request("twice", ["--group", "lengths_twice"]))
    assert _code(caught) == "ResourceInUse"
    assert _finished(aws, "twice")["ProcessingJobStatus"] == "Completed"


def test_the_built_in_pipeline_runs_as_a_processing_job_too(aws: dict) -> None:
    """`loopworks process` is an entrypoint like any other: the review pipeline over the
    wire, with the job's record, logs and uploads."""
    from loopworks.samples.reviews import generate_reviews, write_reviews

    csv = aws["home"].parent / "reviews.csv"
    write_reviews(generate_reviews(300, seed=7), csv)
    aws["s3"].put_object(Bucket="proc", Key="raw/reviews.csv", Body=csv.read_bytes())
    request = _request("built-in", ["/opt/ml/processing/input/raw/reviews.csv", "--out",
                                    "/opt/ml/processing/output/features"], instances=1)
    request["ProcessingInputs"] = [{"InputName": "raw", "S3Input": {
        "S3Uri": "s3://proc/raw/", "LocalPath": "/opt/ml/processing/input/raw",
        "S3DataType": "S3Prefix", "S3InputMode": "File"}}]
    request["AppSpecification"]["ContainerEntrypoint"] = ["loopworks", "process"]
    aws["sm"].create_processing_job(**request)
    described = _finished(aws, "built-in", limit=300)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(
        Bucket="proc", Prefix="out/built-in/")["Contents"]]
    assert any(k.endswith(".parquet") and "/train/" in k for k in keys), keys


def test_a_manifest_file_names_the_objects_an_input_gets(aws: dict) -> None:
    _group(aws, "lengths_manifest")
    aws["s3"].put_object(Bucket="proc", Key="manifests/some.json",
                         Body=b'[{"prefix": "s3://proc/reviews/"}, "r2.txt", "r5.txt"]')
    request = _request("from-manifest", ["--group", "lengths_manifest"], instances=1)
    request["ProcessingInputs"][0]["S3Input"].update(
        S3Uri="s3://proc/manifests/some.json", S3DataType="ManifestFile")
    aws["sm"].create_processing_job(**request)
    assert _finished(aws, "from-manifest")["ProcessingJobStatus"] == "Completed"
    body = aws["s3"].get_object(Bucket="proc", Key="out/from-manifest/algo-1.csv")["Body"]
    assert [row.split(",")[0] for row in body.read().decode().split()[1:]] == ["r2", "r5"]
