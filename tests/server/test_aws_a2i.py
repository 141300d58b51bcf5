"""Augmented AI over boto3, end to end: a work team, a human task UI (Liquid + crowd-html
elements), a flow definition, StartHumanLoop with any JSON input; a reviewer answers in
Chromium on the task UI; DescribeHumanLoop reports the output, which boto3's S3 client reads
back from loopworks' object store in A2I's layout and shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

import loopworks

from _aws import aws_keys, clients
from _browser import needs_browser, sign_in
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from botocore.exceptions import ClientError  # noqa: E402

TASK_UI = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-classifier name="sentiment" categories="['-1', '0', '1']"
                    header="Is the model right about this review?">
    <classification-target>{{ task.input.review.body }}</classification-target>
    <short-instructions>The model said {{ task.input.model.label }}.</short-instructions>
  </crowd-classifier>
</crowd-form>
"""


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("a2i") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_team("raters")
        lw.workforce.add_worker("lead", role="admin")
        lw.workforce.add_worker("rita", role="reviewer", teams_=["raters"])
    with running_server(home, "operator-token") as url:
        sagemaker, a2i, s3 = clients(url, aws_keys(home, "lead"), "sagemaker",
                                     "sagemaker-a2i-runtime", "s3")
        yield {"url": url, "home": home, "sagemaker": sagemaker, "a2i": a2i, "s3": s3}


@pytest.fixture(scope="module")
def flow_arn(aws: dict) -> str:
    sm = aws["sagemaker"]
    team = sm.create_workteam(
        WorkteamName="raters", Description="Review sentiment predictions",
        MemberDefinitions=[{"CognitoMemberDefinition": {
            "UserPool": "pool", "UserGroup": "raters", "ClientId": "client"}}])["WorkteamArn"]
    ui = sm.create_human_task_ui(HumanTaskUiName="sentiment-ui",
                                 UiTemplate={"Content": TASK_UI})["HumanTaskUiArn"]
    arn = sm.create_flow_definition(
        FlowDefinitionName="sentiment-flow", RoleArn="arn:aws:iam::000000000000:role/a2i",
        HumanLoopConfig={"WorkteamArn": team, "HumanTaskUiArn": ui, "TaskCount": 1,
                         "TaskTitle": "Check the sentiment",
                         "TaskDescription": "Is the model right?",
                         "TaskTimeLimitInSeconds": 300},
        OutputConfig={"S3OutputPath": "s3://a2i-results/reviews"})["FlowDefinitionArn"]
    return arn


def _input(body: str, label: str) -> str:
    return json.dumps({"review": {"body": body, "id": body[:6]},
                       "model": {"label": label, "score": 0.51}})


def _code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return caught.value.response["Error"]["Code"]


def test_flow_definitions_over_the_wire(aws: dict, flow_arn: str) -> None:
    sm = aws["sagemaker"]
    assert flow_arn == "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/sentiment-flow"
    described = sm.describe_flow_definition(FlowDefinitionName="sentiment-flow")
    assert described["FlowDefinitionStatus"] == "Active"
    assert described["HumanLoopConfig"]["TaskTitle"] == "Check the sentiment"
    assert described["OutputConfig"]["S3OutputPath"] == "s3://a2i-results/reviews"
    names = [f["FlowDefinitionName"] for f in
             sm.list_flow_definitions()["FlowDefinitionSummaries"]]
    assert names == ["sentiment-flow"]
    with pytest.raises(ClientError) as caught:
        sm.create_flow_definition(
            FlowDefinitionName="no-ui", RoleArn="arn:aws:iam::000000000000:role/a2i",
            HumanLoopConfig={"WorkteamArn": described["HumanLoopConfig"]["WorkteamArn"],
                             "HumanTaskUiArn": "arn:aws:sagemaker:us-east-1:000000000000:"
                                               "human-task-ui/missing",
                             "TaskCount": 1, "TaskTitle": "t", "TaskDescription": "d"},
            OutputConfig={"S3OutputPath": "s3://a2i-results/x"})
    assert _code(caught) == "ResourceNotFound"


def test_loops_start_with_any_input_and_are_found_by_name(aws: dict, flow_arn: str) -> None:
    a2i = aws["a2i"]
    arn = a2i.start_human_loop(HumanLoopName="loop-a", FlowDefinitionArn=flow_arn,
                               HumanLoopInput={"InputContent": _input("Fine.", "0")})[
        "HumanLoopArn"]
    assert arn.endswith(":human-loop/loop-a")
    # The same name and content again is the same loop; other content is a conflict.
    a2i.start_human_loop(HumanLoopName="loop-a", FlowDefinitionArn=flow_arn,
                         HumanLoopInput={"InputContent": _input("Fine.", "0")})
    with pytest.raises(ClientError) as caught:
        a2i.start_human_loop(HumanLoopName="loop-a", FlowDefinitionArn=flow_arn,
                             HumanLoopInput={"InputContent": _input("Other", "1")})
    assert _code(caught) == "ConflictException"
    with pytest.raises(ClientError) as caught:
        a2i.start_human_loop(HumanLoopName="loop-b", FlowDefinitionArn=flow_arn,
                             HumanLoopInput={"InputContent": "{not json"})
    assert _code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:  # past A2I's size limit (3 MiB of input)
        a2i.start_human_loop(HumanLoopName="loop-big", FlowDefinitionArn=flow_arn,
                             HumanLoopInput={"InputContent": json.dumps(
                                 {"review": "x" * 3_200_000})})
    assert _code(caught) == "ValidationException"
    assert "at most" in caught.value.response["Error"]["Message"]
    loop = a2i.describe_human_loop(HumanLoopName="loop-a")
    assert loop["HumanLoopStatus"] == "InProgress" and loop["FlowDefinitionArn"] == flow_arn
    with pytest.raises(ClientError) as caught:
        a2i.describe_human_loop(HumanLoopName="nobody")
    assert _code(caught) == "ResourceNotFoundException"
    a2i.start_human_loop(HumanLoopName="loop-stop", FlowDefinitionArn=flow_arn,
                         HumanLoopInput={"InputContent": _input("Meh", "0")})
    a2i.stop_human_loop(HumanLoopName="loop-stop")
    assert a2i.describe_human_loop(HumanLoopName="loop-stop")["HumanLoopStatus"] in (
        "Stopping", "Stopped")
    listed = a2i.list_human_loops(FlowDefinitionArn=flow_arn, SortOrder="Descending",
                                  MaxResults=1)
    assert [s["HumanLoopName"] for s in listed["HumanLoopSummaries"]] == ["loop-stop"]
    rest = a2i.list_human_loops(FlowDefinitionArn=flow_arn, SortOrder="Descending",
                                NextToken=listed["NextToken"])
    assert [s["HumanLoopName"] for s in rest["HumanLoopSummaries"]] == ["loop-a"]
    a2i.delete_human_loop(HumanLoopName="loop-stop")
    with pytest.raises(ClientError):
        a2i.describe_human_loop(HumanLoopName="loop-stop")


@pytest.mark.parametrize("_", [pytest.param(None, marks=needs_browser)])
def test_a_reviewer_answers_on_the_task_ui_and_the_output_lands_in_s3(
        aws: dict, flow_arn: str, page, _) -> None:
    a2i = aws["a2i"]
    a2i.start_human_loop(HumanLoopName="loop-review", FlowDefinitionArn=flow_arn,
                         HumanLoopInput={"InputContent": _input("Great <b>lamp</b>!", "0")})
    with loopworks.open(aws["home"]) as lw:
        sign_in(page, aws["url"], lw.workforce, "rita")
    page.goto(f"{aws['url']}/jobs/review-sentiment-flow")
    page.click("#start-form button")
    found = False
    for _ in range(5):  # earlier loops of the flow may come first: answer until ours shows
        page.wait_for_selector("crowd-classifier")
        found = "Great <b>lamp</b>!" in page.inner_text("#custom-form")
        page.keyboard.press("3" if found else "2")
        page.keyboard.press("Enter")
        page.wait_for_selector("#flash")
        if found:
            break
    assert found
    loop = a2i.describe_human_loop(HumanLoopName="loop-review")
    assert loop["HumanLoopStatus"] == "Completed", loop
    uri = loop["HumanLoopOutput"]["OutputS3Uri"]
    assert re.fullmatch(r"s3://a2i-results/reviews/sentiment-flow/\d{4}/\d\d/\d\d/\d\d/\d\d/"
                        r"\d\d/loop-review/output\.json", uri), uri
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    output = json.loads(aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())
    assert output["inputContent"]["review"]["body"] == "Great <b>lamp</b>!"
    assert output["flowDefinitionArn"] == flow_arn
    assert output["humanLoopArn"] == "arn:aws:sagemaker:us-east-1:000000000000:human-loop/" \
                                     "loop-review"
    assert output["humanLoopName"] == "loop-review"
    answer = output["humanAnswers"][0]
    assert answer["answerContent"] == {"sentiment": {"label": "1"}}
    assert answer["workerId"] == "rita"
    assert answer["workerMetadata"]["identityData"]["sub"] == "rita"
    assert answer["timeSpentInSeconds"] >= 0 and answer["submissionTime"]


def test_every_a2i_runtime_operation_is_routed(aws: dict) -> None:
    """Each operation of botocore's sagemaker-a2i-runtime model reaches a handler here (a
    missing loop is ResourceNotFoundException, never UnknownOperationException)."""
    import botocore.session

    from _aws import sign_v4

    key = aws_keys(aws["home"], "lead")
    model = botocore.session.get_session().get_service_model("sagemaker-a2i-runtime")
    for operation in model.operation_names:
        http = model.operation_model(operation).http
        path = "/aws" + http["requestUri"].replace("{HumanLoopName}", "no-such-loop")
        reply = sign_v4(aws["url"], key, method=http["method"], path=path,
                        body=b"{}" if http["method"] == "POST" else b"",
                        headers={"content-type": "application/json"})
        assert reply.status_code < 500, (operation, reply.text)
        assert reply.headers.get("x-amzn-ErrorType") != "UnknownOperationException", \
            (operation, reply.text)
