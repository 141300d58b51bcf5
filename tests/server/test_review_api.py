"""Human review over HTTP against a real `loopworks serve`: flows and loops through the JSON
API, reviewers answering on the pages, escaping in custom templates, roles."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import httpx
import pytest

from loopworks.labeling.jobs import LabelingJobs
from loopworks.metadata import database_url, open_engine

from conftest import open_task, running_server

LABELS = ["negative", "neutral", "positive"]
SYSTEM = {"Authorization": "Bearer operator-token"}


@pytest.fixture
def server(tmp_path: Path):
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_team("reviewers")
    jobs.workforce.add_team("others")
    jobs.workforce.add_worker("rita", "reviewer", teams_=["reviewers"])
    jobs.workforce.add_worker("oscar", "reviewer", teams_=["others"])
    with running_server(home, "operator-token") as url, contextlib.ExitStack() as stack:
        api = stack.enter_context(httpx.Client(base_url=url, headers=SYSTEM))
        yield url, api, jobs, stack


def create_flow(api: httpx.Client, tmp_path: Path, **changes) -> httpx.Response:
    body = {"name": "check", "team": "reviewers", "labels": LABELS, "task_count": 1,
            "output": str(tmp_path / "out"), "title": "Check the model",
            "webhook_secret": "", "activation_conditions": {"Conditions": [
                {"ConditionType": "ClassificationConfidenceCheck",
                 "ConditionParameters": {"ClassificationLabel": "*",
                                         "ConfidenceLessThan": 0.8}}]}, **changes}
    return api.post("/api/review/flows", json=body)


def start(api: httpx.Client, name: str, text: str, *probs: float) -> httpx.Response:
    return api.post("/api/review/flows/check/loops", json={"name": name, "input_content": {
        "text": text, "probabilities": dict(zip(LABELS, probs, strict=True))}})


def sign_in(stack: contextlib.ExitStack, url: str, jobs: LabelingJobs, worker: str
            ) -> httpx.Client:
    client = stack.enter_context(httpx.Client(base_url=url))
    secret = jobs.workforce.issue_login_link(worker)
    page = client.get(f"/login/{secret}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    client.post(f"/login/{secret}", data={"csrf_token": token})
    return client


def test_flow_and_loops_through_the_api_and_the_reviewer_page(server, tmp_path: Path) -> None:
    url, api, jobs, stack = server
    bad = create_flow(api, tmp_path, name="bad", activation_conditions={"Conditions": [
        {"ConditionType": "Nope", "ConditionParameters": {}}]})
    assert bad.status_code == 422 and "Conditions[0].ConditionType" in bad.text
    created = create_flow(api, tmp_path)
    assert created.status_code == 201 and created.json()["job"] == "review-check"
    assert start(api, "sure", "Great!", 0.01, 0.01, 0.98).json()["started"] is False
    started = start(api, "unsure", "<script>alert(1)</script>meh", 0.3, 0.5, 0.2)
    assert started.status_code == 201
    assert started.json()["loop"]["HumanLoopStatus"] == "InProgress"
    assert start(api, "unsure", "<script>alert(1)</script>meh", 0.3, 0.5, 0.2
                 ).status_code == 200  # idempotent
    assert start(api, "unsure", "other text", 0.3, 0.5, 0.2).status_code == 409

    rita = sign_in(stack, url, jobs, "rita")
    page = open_task(rita, "review-check")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;meh" in page.text
    assert re.search(r'id="model-label">neutral<', page.text)
    assert re.search(r'value="neutral" checked', page.text)  # Enter agrees with the model
    item = re.search(r'/jobs/review-check/tasks/(\d+)"', page.text).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    rita.post(f"/jobs/review-check/tasks/{item}", data={"answer": "negative",
                                                        "csrf_token": token})
    loop = api.get("/api/review/flows/check/loops/unsure").json()
    assert loop["HumanLoopStatus"] == "Completed"  # settled by the answer, no waiting
    assert loop["ConsolidatedAnswer"]["label"] == "negative"
    assert loop["ConsolidatedAnswer"]["agreesWithModel"] is False
    document = json.loads(Path(loop["HumanLoopOutput"]["OutputUri"]).read_text())
    assert document["humanAnswers"][0]["workerId"] == "rita"

    listed = api.get("/api/review/flows/check/loops", params={"status": "Completed"}).json()
    assert [s["HumanLoopName"] for s in listed["HumanLoopSummaries"]] == ["unsure"]
    summary = api.get("/api/review/flows/check").json()["summary"]
    assert summary["evaluated"] == 2 and summary["activated"] == 1
    assert api.delete("/api/review/flows/check/loops/unsure").status_code == 204


def test_roles_teams_and_secrets(server, tmp_path: Path) -> None:
    url, api, jobs, stack = server
    create_flow(api, tmp_path, webhooks=["http://127.0.0.1:9/hook"], webhook_secret="s3cret")
    assert "s3cret" not in api.get("/api/review/flows").text
    start(api, "one", "hmm", 0.4, 0.3, 0.3)
    token = jobs.workforce.issue_api_token("rita")
    reviewer = stack.enter_context(httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}))
    assert reviewer.get("/api/review/flows").status_code == 403
    assert start(reviewer, "two", "hmm", 0.4, 0.3, 0.3).status_code == 403
    assert reviewer.post("/api/labeling/jobs/review-check/next").status_code == 200
    oscar = sign_in(stack, url, jobs, "oscar")
    assert oscar.get("/jobs/review-check").status_code == 403
    assert oscar.get("/admin/review/check").status_code == 403


def test_custom_template_escapes_the_input(server, tmp_path: Path) -> None:
    url, api, jobs, stack = server
    template = ("<h3>Product {{ input.product }}</h3><blockquote>{{ text }}</blockquote>"
                "<p>model: {{ prediction.label }}</p>")
    assert create_flow(api, tmp_path, template=template).status_code == 201
    api.post("/api/review/flows/check/loops", json={"name": "x", "input_content": {
        "text": "fine", "product": "<img src=x onerror=alert(1)>",
        "probabilities": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}}})
    page = open_task(sign_in(stack, url, jobs, "rita"), "review-check").text
    assert "<h3>Product &lt;img src=x onerror=alert(1)&gt;</h3>" in page
    assert "<blockquote>fine</blockquote>" in page and "<p>model: neutral</p>" in page
