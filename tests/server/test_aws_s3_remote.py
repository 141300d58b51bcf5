"""Object bodies on a real S3 server that is not ours: `loopworks serve` with
``object_store_url=s3://...`` pointed at moto's standalone S3 server. boto3 talks to
loopworks' /aws as before; the bytes land in the other server's bucket (puts, copies,
multipart completions joined server-side), nothing under the home. What the server writes
itself lands there too: a Ground Truth job's outputs, an A2I loop's output.json and a
processing job's uploads, each read back through loopworks from inputs uploaded through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import loopworks

from _aws import aws_keys, clients
from _moto import moto_server
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

BLOB_BUCKET = "loopworks-bodies"


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _moto_client(url: str) -> object:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def server(moto_s3: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Path]]:
    _moto_client(moto_s3).create_bucket(Bucket=BLOB_BUCKET)
    home = tmp_path_factory.mktemp("remote-bodies") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
    settings = {"LOOPWORKS_OBJECT_STORE_URL": f"s3://{BLOB_BUCKET}/objects",
                "LOOPWORKS_OBJECT_STORE_ENDPOINT": moto_s3,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}
    with running_server(home, "operator-token", env=settings) as url:
        yield url, home


@pytest.fixture(scope="module")
def s3(server: tuple[str, Path]) -> object:
    url, home = server
    key_id, secret = aws_keys(home, "lead")
    return boto3.client("s3", endpoint_url=f"{url}/aws", region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1},
                                      s3={"addressing_style": "path"}))


def _bodies(moto_s3: str) -> list[tuple[str, int]]:
    listed = _moto_client(moto_s3).list_objects_v2(Bucket=BLOB_BUCKET, Prefix="objects/blobs/")
    return [(o["Key"], o["Size"]) for o in listed.get("Contents", [])]


def test_bodies_live_on_the_other_server(s3, moto_s3: str, server: tuple[str, Path],
                                         tmp_path: Path) -> None:
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="a.txt", Body=b"hello remote bodies")
    assert s3.get_object(Bucket="data", Key="a.txt")["Body"].read() == b"hello remote bodies"
    assert s3.get_object(Bucket="data", Key="a.txt", Range="bytes=6-11")["Body"].read() \
        == b"remote"
    assert [size for _, size in _bodies(moto_s3)] == [19]
    s3.copy_object(Bucket="data", Key="b.txt", CopySource={"Bucket": "data", "Key": "a.txt"})
    assert s3.get_object(Bucket="data", Key="b.txt")["Body"].read() == b"hello remote bodies"
    assert len(_bodies(moto_s3)) == 2

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 << 20))
    s3.upload_file(str(source), "data", "big.bin", Config=TransferConfig(
        multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    back = tmp_path / "back.bin"
    s3.download_file("data", "big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == \
        hashlib.sha256(source.read_bytes()).digest()
    assert s3.head_object(Bucket="data", Key="big.bin")["ETag"].endswith('-3"')
    # The parts were joined on the other server; only the joined body is left there.
    assert sorted(size for _, size in _bodies(moto_s3)) == [19, 19, 12 << 20]
    blobs = server[1] / "s3" / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))

    s3.put_object(Bucket="data", Key="a.txt", Body=b"replaced")
    s3.delete_object(Bucket="data", Key="b.txt")
    s3.delete_object(Bucket="data", Key="big.bin")
    assert [size for _, size in _bodies(moto_s3)] == [8]
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket="data", Key="b.txt")
    assert caught.value.response["Error"]["Code"] == "404"


# ------------------------------------------------- what the server writes itself, on moto

ROLE = "arn:aws:iam::000000000000:role/remote-bodies"
GT = "arn:aws:lambda:us-east-1:432418664414:function:"
LABELS = ["negative", "neutral", "positive"]
# Our own pages in the style of Ground Truth's and A2I's custom templates.
CLASSIFY = """<crowd-form>
  <crowd-classifier name="crowd-classifier" header="What does the review say?"
                    categories="{{ task.input.labels | to_json | escape }}">
    <classification-target>{{ task.input.taskObject }}</classification-target>
  </crowd-classifier>
</crowd-form>
"""
CHECK = """<crowd-form>
  <crowd-classifier name="sentiment" categories="['-1', '0', '1']" header="Is the model right?">
    <classification-target>{{ task.input.review }}</classification-target>
  </crowd-classifier>
</crowd-form>
"""
# A processing script written the SageMaker way: its inputs and outputs under /opt/ml.
TOTALS = '''
import csv, json, os
folder = "/opt/ml/processing/input/sales"
names = sorted(os.listdir(folder))
totals = {}
for name in names:
    with open(os.path.join(folder, name), newline="") as fh:
        for row in csv.DictReader(fh):
            totals[row["shop"]] = totals.get(row["shop"], 0) + int(row["units"])
os.makedirs("/opt/ml/processing/output/totals", exist_ok=True)
with open("/opt/ml/processing/output/totals/totals.json", "w") as out:
    json.dump({"files": names, "totals": totals}, out, sort_keys=True)
'''


@pytest.fixture(scope="module")
def crew(server: tuple[str, Path]) -> dict[str, str]:
    """API tokens of an annotator and a reviewer of the team ``raters``."""
    with loopworks.open(server[1], run_rounds=False) as lw:
        lw.workforce.add_team("raters")
        lw.workforce.add_worker("ann", role="annotator", teams_=["raters"])
        lw.workforce.add_worker("rita", role="reviewer", teams_=["raters"])
        return {name: lw.workforce.issue_api_token(name) for name in ("ann", "rita")}


@pytest.fixture(scope="module")
def sagemaker(server: tuple[str, Path], crew: dict[str, str]) -> dict:
    url, home = server
    sm, a2i = clients(url, aws_keys(home, "lead"), "sagemaker", "sagemaker-a2i-runtime",
                      read_timeout=120)
    team = sm.create_workteam(
        WorkteamName="raters", Description="Label and review sentiment",
        MemberDefinitions=[{"CognitoMemberDefinition": {
            "UserPool": "pool", "UserGroup": "raters", "ClientId": "c"}}])["WorkteamArn"]
    return {"sm": sm, "a2i": a2i, "team": team}


def _blob_keys(moto_s3: str) -> set[str]:
    return {key for key, _ in _bodies(moto_s3)}


def _moto_bodies(moto_s3: str, keys: set[str]) -> list[bytes]:
    """The bodies of these blobs, read from moto's bucket directly."""
    client = _moto_client(moto_s3)
    return [client.get_object(Bucket=BLOB_BUCKET, Key=key)["Body"].read() for key in keys]


def _through_loopworks(s3, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _all_under(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under a prefix, listed and read through loopworks."""
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]
    return {key: _through_loopworks(s3, f"s3://{bucket}/{key}") for key in keys}


def _home_holds_no_bodies(home: Path) -> None:
    blobs = home / "s3" / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))
    staging = home / "s3" / "staging"  # every staged body was uploaded, then removed
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))


def _answer_all(url: str, token: str, job: str, answer_for) -> list[dict]:
    """Lease and answer every task a worker gets in a job over the JSON API; the tasks."""
    done = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as api:
        reply = api.post(f"/api/labeling/jobs/{job}/next")
        while reply.status_code != 204:
            assert reply.status_code in (200, 201), reply.text
            task = reply.json().get("next") or reply.json()
            reply = api.post(f"/api/labeling/jobs/{job}/tasks/{task['item_id']}/answer",
                             params={"next": "true"}, json={"answer": answer_for(task)})
            done.append(task)
    return done


def test_a_labeling_jobs_outputs_land_on_the_other_server(
        s3, sagemaker: dict, crew: dict[str, str], moto_s3: str,
        server: tuple[str, Path]) -> None:
    url, home = server
    sm = sagemaker["sm"]
    reviews = {"r1": "Great lamp, bright and sturdy", "r2": "Broke after a week",
               "r3": "Does the job"}
    before = _blob_keys(moto_s3)
    s3.create_bucket(Bucket="gt-in")
    s3.put_object(Bucket="gt-in", Key="templates/classify.liquid.html", Body=CLASSIFY)
    s3.put_object(Bucket="gt-in", Key="labels.json", Body=json.dumps({
        "document-version": "2018-11-28", "labels": [{"label": x} for x in LABELS]}))
    s3.put_object(Bucket="gt-in", Key="texts/r3.txt", Body=reviews["r3"].encode())
    lines = [{"source": reviews["r1"], "review-id": "r1"},
             {"source": reviews["r2"], "review-id": "r2"},
             {"source-ref": "s3://gt-in/texts/r3.txt", "review-id": "r3"}]
    s3.put_object(Bucket="gt-in", Key="manifests/reviews.manifest",
                  Body="".join(json.dumps(line) + "\n" for line in lines))
    inputs = _blob_keys(moto_s3) - before
    assert len(inputs) == 4  # every input's body is on moto, before the job reads it

    sm.create_labeling_job(
        LabelingJobName="remote-sentiment", LabelAttributeName="sentiment", RoleArn=ROLE,
        InputConfig={"DataSource": {"S3DataSource": {
            "ManifestS3Uri": "s3://gt-in/manifests/reviews.manifest"}}},
        OutputConfig={"S3OutputPath": "s3://gt-out/jobs"},
        LabelCategoryConfigS3Uri="s3://gt-in/labels.json",
        HumanTaskConfig={
            "WorkteamArn": sagemaker["team"],
            "UiConfig": {"UiTemplateS3Uri": "s3://gt-in/templates/classify.liquid.html"},
            "PreHumanTaskLambdaArn": GT + "PRE-TextMultiClass",
            "TaskTitle": "Review sentiment", "TaskDescription": "Read the review, pick one",
            "NumberOfHumanWorkersPerDataObject": 1, "TaskTimeLimitInSeconds": 300,
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": GT + "ACS-TextMultiClass"}})
    chosen = {reviews["r1"]: "positive", reviews["r2"]: "negative", reviews["r3"]: "neutral"}
    tasks = _answer_all(url, crew["ann"], "remote-sentiment",
                        lambda task: {"crowd-classifier": {"label": chosen[task["source"]]}})
    assert sorted(task["source"] for task in tasks) == sorted(reviews.values())

    described = sm.describe_labeling_job(LabelingJobName="remote-sentiment")
    assert described["LabelingJobStatus"] == "Completed"
    assert described["LabelCounters"]["HumanLabeled"] == 3
    output = described["LabelingJobOutput"]["OutputDatasetS3Uri"]
    assert output == "s3://gt-out/jobs/remote-sentiment/manifests/output/output.manifest"
    labeled = [json.loads(line) for line in
               _through_loopworks(s3, output).decode().splitlines()]
    assert [line["review-id"] for line in labeled] == ["r1", "r2", "r3"]
    assert [line["sentiment"] for line in labeled] == [2, 0, 1]  # class indexes, as GT's
    assert [line["sentiment-metadata"]["class-name"] for line in labeled] == \
        ["positive", "negative", "neutral"]
    assert labeled[2]["source-ref"] == "s3://gt-in/texts/r3.txt"

    written = _all_under(s3, "gt-out", "jobs/remote-sentiment/")
    assert "jobs/remote-sentiment/manifests/output/output.manifest" in written
    assert any("/worker-response/" in key for key in written), sorted(written)
    # Every output's body is a new blob on moto, byte for byte; none is under the home.
    new = _blob_keys(moto_s3) - before - inputs
    assert len(new) >= len(written)
    on_moto = _moto_bodies(moto_s3, new)
    for key, body in written.items():
        assert body in on_moto, key
    _home_holds_no_bodies(home)


def test_a_human_loops_output_lands_on_the_other_server(
        s3, sagemaker: dict, crew: dict[str, str], moto_s3: str,
        server: tuple[str, Path]) -> None:
    url, home = server
    sm, a2i = sagemaker["sm"], sagemaker["a2i"]
    ui = sm.create_human_task_ui(HumanTaskUiName="remote-check",
                                 UiTemplate={"Content": CHECK})["HumanTaskUiArn"]
    flow = sm.create_flow_definition(
        FlowDefinitionName="remote-check", RoleArn=ROLE,
        HumanLoopConfig={"WorkteamArn": sagemaker["team"], "HumanTaskUiArn": ui,
                         "TaskCount": 1, "TaskTitle": "Check the sentiment",
                         "TaskDescription": "Is the model right?"},
        OutputConfig={"S3OutputPath": "s3://a2i-out/reviews"})["FlowDefinitionArn"]
    before = _blob_keys(moto_s3)
    content = {"review": "Sturdy, but the cable is short", "model": {"label": "0"}}
    a2i.start_human_loop(HumanLoopName="remote-loop", FlowDefinitionArn=flow,
                         HumanLoopInput={"InputContent": json.dumps(content)})
    tasks = _answer_all(url, crew["rita"], "review-remote-check",
                        lambda task: {"sentiment": {"label": "1"}})
    assert len(tasks) == 1

    loop = a2i.describe_human_loop(HumanLoopName="remote-loop")
    assert loop["HumanLoopStatus"] == "Completed", loop
    uri = loop["HumanLoopOutput"]["OutputS3Uri"]
    assert re.fullmatch(r"s3://a2i-out/reviews/remote-check/(\d\d(\d\d)?/){6}remote-loop/"
                        r"output\.json", uri), uri
    body = _through_loopworks(s3, uri)
    output = json.loads(body)
    assert output["inputContent"] == content
    assert output["humanLoopName"] == "remote-loop" and output["flowDefinitionArn"] == flow
    [answer] = output["humanAnswers"]
    assert answer["answerContent"] == {"sentiment": {"label": "1"}}
    assert answer["workerId"] == "rita"
    new = _blob_keys(moto_s3) - before
    assert body in _moto_bodies(moto_s3, new)
    _home_holds_no_bodies(home)


def test_a_processing_jobs_inputs_and_outputs_live_on_the_other_server(
        s3, sagemaker: dict, moto_s3: str, server: tuple[str, Path]) -> None:
    home = server[1]
    sm = sagemaker["sm"]
    s3.create_bucket(Bucket="proc-in")
    s3.put_object(Bucket="proc-in", Key="code/totals.py", Body=TOTALS.encode())
    s3.put_object(Bucket="proc-in", Key="sales/2026-11.csv",
                  Body=b"shop,units\nnorth,3\nsouth,4\n")
    s3.put_object(Bucket="proc-in", Key="sales/2026-12.csv",
                  Body=b"shop,units\nnorth,10\neast,1\n")
    before = _blob_keys(moto_s3)

    def s3_input(name: str, uri: str) -> dict:
        return {"InputName": name, "AppManaged": False, "S3Input": {
            "S3Uri": uri, "LocalPath": f"/opt/ml/processing/input/{name}",
            "S3DataType": "S3Prefix", "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated"}}

    sm.create_processing_job(
        ProcessingJobName="remote-totals", RoleArn=ROLE,
        ProcessingInputs=[s3_input("sales", "s3://proc-in/sales/"),
                          s3_input("code", "s3://proc-in/code/totals.py")],
        ProcessingOutputConfig={"Outputs": [{"OutputName": "totals", "S3Output": {
            "S3Uri": "s3://proc-out/totals", "LocalPath": "/opt/ml/processing/output/totals",
            "S3UploadMode": "EndOfJob"}}]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1,
                                               "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 30}},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
        AppSpecification={"ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/"
                                      "sagemaker-scikit-learn:1.2-1",
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/"
                                                             "totals.py"]})
    deadline = time.monotonic() + 120
    while (described := sm.describe_processing_job(ProcessingJobName="remote-totals"))[
            "ProcessingJobStatus"] not in ("Completed", "Failed", "Stopped"):
        assert time.monotonic() < deadline, described
        time.sleep(0.2)
    assert described["ProcessingJobStatus"] == "Completed", described.get("FailureReason")

    written = _all_under(s3, "proc-out", "totals/")
    assert list(written) == ["totals/totals.json"]
    assert json.loads(written["totals/totals.json"]) == {
        "files": ["2026-11.csv", "2026-12.csv"],
        "totals": {"east": 1, "north": 13, "south": 4}}
    new = _blob_keys(moto_s3) - before
    assert len(new) == 1 and _moto_bodies(moto_s3, new) == [written["totals/totals.json"]]
    _home_holds_no_bodies(home)
