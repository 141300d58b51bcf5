"""Ground Truth labeling jobs over boto3 (issue 15): CreateLabelingJob with the input manifest,
label categories and template in loopworks' object store, a built-in task type named by
its PRE-/ACS- functions or a custom workflow named by hooks; people answer (in Chromium on
the crowd-html template); Describe/List report status and counters; the outputs are read
back with boto3's S3 client in Ground Truth's layout and shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopworks
from loopworks.labeling.hooks import Hooks
from loopworks.labeling.manifest import TASK_INPUT_FIELD

from _aws import aws_keys, clients
from _browser import needs_browser, sign_in
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from botocore.exceptions import ClientError  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/ground-truth"
GT = "arn:aws:lambda:us-east-1:432418664414:function:"
HOOK = "arn:aws:lambda:us-east-1:000000000000:function:"

# A text-classification page in the style of Ground Truth's built-in template (our own).
CLASSIFY = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-classifier name="crowd-classifier" categories="{{ task.input.labels | to_json | escape }}"
                    header="What does the review say about the product?">
    <classification-target>{{ task.input.taskObject }}</classification-target>
    <short-instructions>Pick the review's sentiment.</short-instructions>
  </crowd-classifier>
</crowd-form>
"""
# A custom page reading what the pre-annotation hook made.
CUSTOM = """<crowd-form>
  <crowd-classifier name="sentiment" categories="['negative', 'positive']" header="Sentiment?">
    <classification-target>{{ task.input.review }} ({{ task.input.shop }})</classification-target>
  </crowd-classifier>
</crowd-form>
"""
REVIEWS = ["Great lamp, bright and sturdy", "Broke after a week", "Does the job"]


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("gt") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_team("raters")
        lw.workforce.add_worker("lead", role="admin")
        for name in ("ann", "bea"):
            lw.workforce.add_worker(name, role="annotator", teams_=["raters"])
    tests = str(Path(__file__).resolve().parents[1])  # gthooks, for the server's hooks
    with running_server(home, "operator-token", env={"PYTHONPATH": tests}) as url:
        sm, s3 = clients(url, aws_keys(home, "lead"), "sagemaker", "s3", read_timeout=120)
        team = sm.create_workteam(
            WorkteamName="raters", Description="Label review sentiment",
            MemberDefinitions=[{"CognitoMemberDefinition": {
                "UserPool": "pool", "UserGroup": "raters", "ClientId": "c"}}])["WorkteamArn"]
        s3.create_bucket(Bucket="gt-in")
        s3.put_object(Bucket="gt-in", Key="templates/classify.liquid.html", Body=CLASSIFY)
        s3.put_object(Bucket="gt-in", Key="labels.json", Body=json.dumps({
            "document-version": "2018-11-28",
            "labels": [{"label": "negative"}, {"label": "neutral"}, {"label": "positive"}],
            "instructions": {"shortInstruction": "Pick the sentiment",
                             "fullInstruction": "Negative, neutral or positive."}}))
        s3.put_object(Bucket="gt-in", Key="texts/third.txt", Body=REVIEWS[2].encode())
        yield {"url": url, "home": home, "sm": sm, "s3": s3, "team": team}


def _put_manifest(aws: dict, key: str, lines: list[dict]) -> str:
    aws["s3"].put_object(Bucket="gt-in", Key=key,
                         Body="".join(json.dumps(line) + "\n" for line in lines))
    return f"s3://gt-in/{key}"


def _request(aws: dict, name: str, manifest: str, **changes) -> dict:
    task = {"WorkteamArn": aws["team"],
            "UiConfig": {"UiTemplateS3Uri": "s3://gt-in/templates/classify.liquid.html"},
            "PreHumanTaskLambdaArn": GT + "PRE-TextMultiClass",
            "TaskTitle": "Review sentiment", "TaskDescription": "Read the review, pick one",
            "NumberOfHumanWorkersPerDataObject": 1, "TaskTimeLimitInSeconds": 300,
            "TaskAvailabilityLifetimeInSeconds": 3600, "MaxConcurrentTaskCount": 100,
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": GT + "ACS-TextMultiClass"}}
    task.update(changes.pop("task", {}))
    request = {"LabelingJobName": name, "LabelAttributeName": "sentiment",
               "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest}}},
               "OutputConfig": {"S3OutputPath": "s3://gt-out/jobs"}, "RoleArn": ROLE,
               "LabelCategoryConfigS3Uri": "s3://gt-in/labels.json", "HumanTaskConfig": task}
    request.update(changes)
    return {k: v for k, v in request.items() if v is not None}


def _code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return caught.value.response["Error"]["Code"]


def _object(aws: dict, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()


def _keys(aws: dict, prefix: str) -> list[str]:
    listed = aws["s3"].list_objects_v2(Bucket="gt-out", Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


@pytest.mark.parametrize("_", [pytest.param(None, marks=needs_browser)])
def test_a_person_labels_a_built_in_job_in_the_browser_and_the_outputs_land_in_s3(
        aws: dict, page, _) -> None:
    sm = aws["sm"]
    manifest = _put_manifest(aws, "manifests/reviews.manifest", [
        {"source": REVIEWS[0], "review-id": "r1"}, {"source": REVIEWS[1], "review-id": "r2"},
        {"source-ref": "s3://gt-in/texts/third.txt", "review-id": "r3"}])
    arn = sm.create_labeling_job(**_request(aws, "reviews-sentiment", manifest))[
        "LabelingJobArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:labeling-job/reviews-sentiment"
    described = sm.describe_labeling_job(LabelingJobName="reviews-sentiment")
    assert described["LabelingJobStatus"] == "InProgress"
    assert described["LabelCounters"]["Unlabeled"] == 3
    assert described["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] == 1
    assert "LabelingJobOutput" not in described

    chosen = {REVIEWS[0]: "3", REVIEWS[1]: "1", REVIEWS[2]: "2"}  # keys of the categories
    with loopworks.open(aws["home"]) as lw:
        sign_in(page, aws["url"], lw.workforce, "ann")
    page.goto(f"{aws['url']}/jobs/reviews-sentiment")
    page.click("#start-form button")
    for _ in range(3):
        page.wait_for_selector("crowd-classifier")
        shown = page.inner_text("#custom-form")
        [text] = [r for r in REVIEWS if r in shown]
        page.keyboard.press(chosen[text])
        page.keyboard.press("Enter")
        page.wait_for_selector("#flash")

    described = sm.describe_labeling_job(LabelingJobName="reviews-sentiment")
    assert described["LabelingJobStatus"] == "Completed"
    assert described["LabelCounters"] == {"TotalLabeled": 3, "HumanLabeled": 3,
                                          "MachineLabeled": 0, "FailedNonRetryableError": 0,
                                          "Unlabeled": 0}
    output = described["LabelingJobOutput"]["OutputDatasetS3Uri"]
    assert output == "s3://gt-out/jobs/reviews-sentiment/manifests/output/output.manifest"
    lines = [json.loads(line) for line in _object(aws, output).decode().splitlines()]
    assert [line["review-id"] for line in lines] == ["r1", "r2", "r3"]
    assert [line["sentiment"] for line in lines] == [2, 0, 1]  # class indexes, as GT writes
    meta = lines[0]["sentiment-metadata"]
    assert meta["class-name"] == "positive" and meta["human-annotated"] == "yes"
    assert meta["type"] == "groundtruth/text-classification"
    assert meta["job-name"] == "labeling-job/reviews-sentiment"
    assert lines[2]["source-ref"] == "s3://gt-in/texts/third.txt"

    [response_key] = _keys(aws, "jobs/reviews-sentiment/annotations/worker-response/"
                                "iteration-1/0/")
    [answer] = json.loads(_object(aws, f"s3://gt-out/{response_key}"))["answers"]
    assert answer["answerContent"] == {"crowd-classifier": {"label": "positive"}}
    assert answer["workerId"] == "ann"
    assert answer["workerMetadata"]["identityData"]["sub"] == "ann"
    assert answer["timeSpentInSeconds"] >= 0 and answer["submissionTime"]
    [response] = _keys(aws, "jobs/reviews-sentiment/annotations/consolidated-annotation/"
                            "consolidation-response/iteration-1/")
    consolidated = json.loads(_object(aws, f"s3://gt-out/{response}"))
    assert consolidated[1] == {"datasetObjectId": "1", "consolidatedAnnotation": {"content": {
        "sentiment": 0, "sentiment-metadata": lines[1]["sentiment-metadata"]}}}

    summaries = sm.list_labeling_jobs(NameContains="sentiment", StatusEquals="Completed")
    [summary] = summaries["LabelingJobSummaryList"]
    assert summary["LabelingJobName"] == "reviews-sentiment"
    assert summary["LabelingJobOutput"]["OutputDatasetS3Uri"] == output
    for_team = sm.list_labeling_jobs_for_workteam(WorkteamArn=aws["team"])
    assert {s["LabelingJobName"] for s in for_team["LabelingJobSummaryList"]} >= \
        {"reviews-sentiment"}


def test_a_custom_workflow_runs_its_pre_and_consolidation_hooks(aws: dict) -> None:
    sm = aws["sm"]
    with loopworks.open(aws["home"]) as lw:
        hooks = Hooks(lw.engine)
        hooks.add("gt-pre", python="gthooks:pre", timeout_seconds=1.0, retries=1)
        hooks.add("gt-post", python="gthooks:post")
    ui = sm.create_human_task_ui(HumanTaskUiName="custom-sentiment",
                                 UiTemplate={"Content": CUSTOM})["HumanTaskUiArn"]
    manifest = _put_manifest(aws, "manifests/custom.manifest", [
        {"source": "Lovely fabric", "shop": "north"}, {"source": "Torn seams", "shop": "south"},
        {"source": "Never mind", "skip": True}, {"source": "Kaboom", "explode": True},
        {"source": "Sleepy", "slow": True}])
    sm.create_labeling_job(**_request(aws, "custom-sentiment", manifest, task={
        "UiConfig": {"HumanTaskUiArn": ui}, "PreHumanTaskLambdaArn": HOOK + "gt-pre",
        "NumberOfHumanWorkersPerDataObject": 2,
        "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn":
                                          HOOK + "gt-post"}}, LabelCategoryConfigS3Uri=None))
    described = sm.describe_labeling_job(LabelingJobName="custom-sentiment")
    assert described["LabelCounters"]["Unlabeled"] == 2
    assert described["LabelCounters"]["FailedNonRetryableError"] == 3

    forms = {"Lovely fabric": ["positive", "positive"], "Torn seams": ["negative", "positive"]}
    with loopworks.open(aws["home"]) as lw:
        for i, name in enumerate(("ann", "bea")):
            worker = lw.workforce.worker(name)
            while (task := lw.labeling.next_task("custom-sentiment", worker)) is not None:
                made = task.data[TASK_INPUT_FIELD]  # the hook's task input
                assert made["job"] == "custom-sentiment" and made["review"] == task.source
                lw.labeling.submit("custom-sentiment", task.item_id, worker,
                                   {"sentiment": {"label": forms[task.source][i]}})

    described = sm.describe_labeling_job(LabelingJobName="custom-sentiment")
    assert described["LabelingJobStatus"] == "Completed"
    lines = [json.loads(line) for line in _object(
        aws, described["LabelingJobOutput"]["OutputDatasetS3Uri"]).decode().splitlines()]
    assert lines[0]["sentiment"] == {"sentiment": "positive", "votes": 2, "workers": 2}
    assert lines[1]["sentiment"]["workers"] == 2
    assert TASK_INPUT_FIELD not in lines[0]
    reasons = [line["sentiment-metadata"]["failure-reason"] for line in lines[2:]]
    assert "isHumanAnnotationRequired" in reasons[0]
    assert "ValueError" in reasons[1] and "cannot prepare" in reasons[1]
    assert "timed out" in reasons[2]
    [request] = _keys(aws, "jobs/custom-sentiment/annotations/consolidated-annotation/"
                           "consolidation-request/iteration-1/")
    payload = json.loads(_object(aws, f"s3://gt-out/{request}"))
    assert [p["datasetObjectId"] for p in payload] == ["0", "1"]
    assert payload[0]["dataObject"] == {"content": "Lovely fabric"}
    assert json.loads(payload[0]["annotations"][0]["annotationData"]["content"]) == \
        {"sentiment": {"label": "positive"}}


def test_a_stopped_job_keeps_its_answers_and_writes_its_outputs(aws: dict) -> None:
    sm = aws["sm"]
    manifest = _put_manifest(aws, "manifests/stop.manifest",
                             [{"source": text} for text in REVIEWS])
    sm.create_labeling_job(**_request(aws, "to-stop", manifest))
    with loopworks.open(aws["home"]) as lw:
        worker = lw.workforce.worker("bea")
        task = lw.labeling.next_task("to-stop", worker)
        assert task is not None
        lw.labeling.submit("to-stop", task.item_id, worker, {"crowd-classifier": {
            "label": "neutral"}})
    sm.stop_labeling_job(LabelingJobName="to-stop")
    described = sm.describe_labeling_job(LabelingJobName="to-stop")
    assert described["LabelingJobStatus"] == "Stopped"
    assert described["LabelCounters"]["HumanLabeled"] == 1
    lines = [json.loads(line) for line in _object(
        aws, described["LabelingJobOutput"]["OutputDatasetS3Uri"]).decode().splitlines()]
    assert [line.get("sentiment") for line in lines].count(1) == 1
    with pytest.raises(ClientError) as caught:
        sm.stop_labeling_job(LabelingJobName="to-stop")
    assert _code(caught) == "ValidationException"


def test_bad_labeling_jobs_are_refused_naming_what_is_wrong(aws: dict) -> None:
    sm = aws["sm"]
    manifest = _put_manifest(aws, "manifests/ok.manifest", [{"source": "fine"}])

    def refused(name: str, **changes) -> str:
        with pytest.raises(ClientError) as caught:
            sm.create_labeling_job(**_request(aws, name, manifest, **changes))
        assert _code(caught) in ("ValidationException", "ResourceNotFound", "ResourceInUse")
        return caught.value.response["Error"]["Message"]

    assert "SemanticSegmentation is not supported" in refused("bad-type", task={
        "PreHumanTaskLambdaArn": GT + "PRE-SemanticSegmentation"})
    assert "loopworks hooks add nobody" in refused("bad-hook", task={
        "PreHumanTaskLambdaArn": HOOK + "nobody"})
    assert "not a Lambda function ARN" in refused("bad-arn", task={
        "PreHumanTaskLambdaArn": "arn:aws:sqs:us-east-1:1:queue"})
    assert "does not exist" in refused("no-team", task={
        "WorkteamArn": aws["team"].replace("raters", "ghosts")})
    aws["s3"].put_object(Bucket="gt-in", Key="templates/broken.html",
                         Body=b"<crowd-form>\n{{ task.input.taskObject | escape </crowd-form>")
    assert "line 2" in refused("bad-template", task={
        "UiConfig": {"UiTemplateS3Uri": "s3://gt-in/templates/broken.html"}})
    aws["s3"].put_object(Bucket="gt-in", Key="templates/huge.html",
                         Body=b"<crowd-form>" + b" " * 600_000 + b"</crowd-form>")
    assert "a template may have" in refused("big-template", task={
        "UiConfig": {"UiTemplateS3Uri": "s3://gt-in/templates/huge.html"}})
    assert "does not exist" in refused(
        "no-manifest", InputConfig={"DataSource": {"S3DataSource": {
            "ManifestS3Uri": "s3://gt-in/manifests/none.manifest"}}})
    broken = _put_manifest(aws, "manifests/broken.manifest", [{"source": "ok"}])
    aws["s3"].put_object(Bucket="gt-in", Key="manifests/broken.manifest",
                         Body=b'{"source": "ok"}\n{"source": \n')
    assert f"{broken}, line 2" in refused(
        "bad-manifest", InputConfig={"DataSource": {"S3DataSource": {
            "ManifestS3Uri": broken}}})
    assert "source-ref" in refused("missing-ref", InputConfig={"DataSource": {"S3DataSource": {
        "ManifestS3Uri": _put_manifest(aws, "manifests/ref.manifest",
                                       [{"source-ref": "s3://gt-in/none.txt"}])}}})
    assert "LabelCategoryConfigS3Uri is required" in refused(
        "no-labels", LabelCategoryConfigS3Uri=None)
    sm.create_labeling_job(**_request(aws, "twice", manifest))
    assert "already exists" in refused("twice")
    with pytest.raises(ClientError) as caught:
        sm.describe_labeling_job(LabelingJobName="never-made")
    assert _code(caught) == "ResourceNotFound"
    assert not sm.list_labeling_jobs(NameContains="bad-")["LabelingJobSummaryList"]
