"""The human-in-the-loop control plane over boto3 (issue 15, first part): the private
workforce, work teams (their member groups are loopworks teams) and human task UIs (Liquid
templates with crowd-html elements, parsed when given). botocore parses every answer
against its sagemaker model."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopworks

from _aws import REGION, aws_keys
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

# A sentiment task in the style of Ground Truth's custom templates (our own).
SENTIMENT_UI = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-classifier name="sentiment" categories="['-1', '0', '1']"
                    header="What does this review say about the product?">
    <classification-target>{{ task.input.taskObject | escape }}</classification-target>
    <full-instructions header="Sentiment">Negative, neutral or positive.</full-instructions>
    <short-instructions>Pick the review's sentiment.</short-instructions>
  </crowd-classifier>
</crowd-form>
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("humanloop") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
        lw.workforce.add_worker("ann", role="annotator")
    with running_server(home, "operator-token") as url:
        yield url, home


def _sagemaker(server: tuple[str, Path], worker: str = "lead") -> object:
    key_id, secret = aws_keys(server[1], worker)
    return boto3.client("sagemaker", endpoint_url=f"{server[0]}/aws", region_name=REGION,
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def sagemaker(server: tuple[str, Path]) -> object:
    return _sagemaker(server)


def _code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return caught.value.response["Error"]["Code"]


def _cognito(group: str) -> dict:
    return {"CognitoMemberDefinition": {"UserPool": "us-east-1_abc", "UserGroup": group,
                                        "ClientId": "client"}}


def test_the_private_workforce(sagemaker, server: tuple[str, Path]) -> None:
    listed = sagemaker.list_workforces()["Workforces"]
    assert [w["WorkforceName"] for w in listed] == ["default"]
    assert listed[0]["SubDomain"] == server[0].removeprefix("http://")
    described = sagemaker.describe_workforce(WorkforceName="default")["Workforce"]
    assert described["WorkforceArn"] == "arn:aws:sagemaker:us-east-1:000000000000:" \
                                        "workforce/default"
    assert sagemaker.list_workforces(NameContains="other")["Workforces"] == []
    with pytest.raises(ClientError) as caught:
        sagemaker.describe_workforce(WorkforceName="other")
    assert _code(caught) == "ResourceNotFound"


def test_work_teams_are_loopworks_teams(sagemaker, server: tuple[str, Path]) -> None:
    arn = sagemaker.create_workteam(WorkteamName="sentiment-raters",
                                    MemberDefinitions=[_cognito("raters")],
                                    Description="Rate review sentiment")["WorkteamArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:workteam/private-crowd/" \
                  "sentiment-raters"
    sagemaker.create_workteam(
        WorkteamName="Reviewers-2", Description="Second opinions",
        MemberDefinitions=[{"OidcMemberDefinition": {"Groups": ["seniors", "leads"]}}],
        NotificationConfiguration={"NotificationTopicArn":
                                   "arn:aws:sns:us-east-1:000000000000:tasks"})
    with loopworks.open(server[1]) as lw:
        assert {"raters", "seniors", "leads"} <= {t.name for t in lw.workforce.teams()}
    team = sagemaker.describe_workteam(WorkteamName="sentiment-raters")["Workteam"]
    assert team["WorkteamArn"] == arn and team["Description"] == "Rate review sentiment"
    assert team["MemberDefinitions"] == [_cognito("raters")]
    assert team["WorkforceArn"].endswith(":workforce/default")
    with pytest.raises(ClientError) as caught:
        sagemaker.create_workteam(WorkteamName="sentiment-raters", Description="again",
                                  MemberDefinitions=[_cognito("raters")])
    assert _code(caught) == "ResourceInUse"
    with pytest.raises(ClientError) as caught:  # Cognito and OIDC members do not mix
        sagemaker.create_workteam(
            WorkteamName="mixed", Description="x",
            MemberDefinitions=[_cognito("a"), {"OidcMemberDefinition": {"Groups": ["b"]}}])
    assert _code(caught) == "ValidationException"

    names = [t["WorkteamName"] for t in sagemaker.list_workteams(
        SortBy="Name", SortOrder="Descending")["Workteams"]]
    assert names == ["sentiment-raters", "Reviewers-2"]
    first = sagemaker.list_workteams(MaxResults=1)
    rest = sagemaker.list_workteams(MaxResults=1, NextToken=first["NextToken"])
    assert [t["WorkteamName"] for t in first["Workteams"] + rest["Workteams"]] == \
        ["Reviewers-2", "sentiment-raters"]
    assert [t["WorkteamName"] for t in sagemaker.list_workteams(
        NameContains="review")["Workteams"]] == ["Reviewers-2"]

    updated = sagemaker.update_workteam(WorkteamName="sentiment-raters",
                                        Description="Rate sentiment, carefully",
                                        MemberDefinitions=[_cognito("raters-v2")])["Workteam"]
    assert updated["Description"] == "Rate sentiment, carefully"
    with loopworks.open(server[1]) as lw:
        assert "raters-v2" in {t.name for t in lw.workforce.teams()}
    assert sagemaker.delete_workteam(WorkteamName="Reviewers-2")["Success"] is True
    with pytest.raises(ClientError) as caught:
        sagemaker.describe_workteam(WorkteamName="Reviewers-2")
    assert _code(caught) == "ResourceNotFound"


def test_human_task_uis(sagemaker) -> None:
    before = time.time() - 1
    arn = sagemaker.create_human_task_ui(HumanTaskUiName="review-sentiment",
                                         UiTemplate={"Content": SENTIMENT_UI})["HumanTaskUiArn"]
    assert arn.endswith(":human-task-ui/review-sentiment")
    sagemaker.create_human_task_ui(HumanTaskUiName="second-ui",
                                   UiTemplate={"Content": "<crowd-form></crowd-form>"})
    described = sagemaker.describe_human_task_ui(HumanTaskUiName="review-sentiment")
    assert described["HumanTaskUiStatus"] == "Active"
    assert described["UiTemplate"]["ContentSha256"] == \
        hashlib.sha256(SENTIMENT_UI.encode()).hexdigest()
    summaries = sagemaker.list_human_task_uis(CreationTimeAfter=before,
                                              SortOrder="Ascending")["HumanTaskUiSummaries"]
    assert [s["HumanTaskUiName"] for s in summaries] == ["review-sentiment", "second-ui"]
    assert sagemaker.list_human_task_uis(CreationTimeBefore=before)[
        "HumanTaskUiSummaries"] == []
    page = sagemaker.list_human_task_uis(MaxResults=1, SortOrder="Descending")
    assert [s["HumanTaskUiName"] for s in page["HumanTaskUiSummaries"]] == ["second-ui"]
    assert page["NextToken"]

    broken = SENTIMENT_UI.replace("{{ task.input.taskObject | escape }}",
                                  "{{ task.input.taskObject | escape ")
    with pytest.raises(ClientError) as caught:
        sagemaker.create_human_task_ui(HumanTaskUiName="broken", UiTemplate={"Content": broken})
    assert _code(caught) == "ValidationException"
    assert "line 5, column 28" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        sagemaker.create_human_task_ui(HumanTaskUiName="Not_Valid",
                                       UiTemplate={"Content": SENTIMENT_UI})
    assert _code(caught) == "ValidationException"
    with pytest.raises(ClientError) as caught:
        sagemaker.create_human_task_ui(HumanTaskUiName="review-sentiment",
                                       UiTemplate={"Content": SENTIMENT_UI})
    assert _code(caught) == "ResourceInUse"
    sagemaker.delete_human_task_ui(HumanTaskUiName="second-ui")
    with pytest.raises(ClientError) as caught:
        sagemaker.describe_human_task_ui(HumanTaskUiName="second-ui")
    assert _code(caught) == "ResourceNotFound"


def test_only_admins_manage_them(server: tuple[str, Path]) -> None:
    annotator = _sagemaker(server, "ann")
    for call in (annotator.list_workteams, annotator.list_human_task_uis,
                 annotator.list_workforces):
        with pytest.raises(ClientError) as caught:
            call()
        assert _code(caught) == "AccessDeniedException"
