"""Automated labeling through a real `loopworks serve`: the answer that closes a round starts
the next one in the background (the reply does not wait for the model), the round opens the
next batch shortly after, and admins read the rounds at /api/labeling/jobs/{job}/rounds."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from loopworks.labeling.autolabel import AutoLabeler
from loopworks.labeling.jobs import JobSpec, JobStatus, LabelingJobs
from loopworks.labeling.spec import Task
from loopworks.labeling.workforce import Worker
from loopworks.metadata import database_url, open_engine
from loopworks.samples import generate_reviews

from conftest import running_server

LABELS = ["negative", "neutral", "positive"]
FIRST_BATCH = 250 + 125  # 1,250 items: 20% validation, then a training sample of 10%


class AutoJob:
    """A 1,250-review job ``auto`` with automated labeling, a worker ``ana`` of its team."""

    def __init__(self, home: Path) -> None:
        self.jobs = LabelingJobs(open_engine(database_url(home)))
        table = generate_reviews(1250, seed=2, broken=False).to_pandas()
        self.truth = {text: LABELS[0] if stars <= 2 else LABELS[1] if stars == 3
                      else LABELS[2]
                      for text, stars in zip(table.review_body, table.star_rating, strict=True)}
        self.jobs.workforce.add_team("crowd")
        self.jobs.create_job(JobSpec("auto", "crowd", LABELS, auto_label={"batch_size": 100}),
                             list(table.review_body))
        self.ana: Worker = self.jobs.workforce.add_worker("ana", teams_=["crowd"])
        self.token = self.jobs.workforce.issue_api_token("ana")

    def answer_open_items(self, *, keep_last: bool = False) -> Task | None:
        """Answer every open item as ana through the library (no server, so no round
        starts); with ``keep_last`` the last one stays leased to ana, unanswered."""
        task = self.jobs.next_task("auto", self.ana)
        while task is not None:
            following = self.jobs.next_task("auto", self.ana)
            if following is None and keep_last:
                return task
            self.jobs.submit("auto", task.item_id, self.ana, self.truth[task.source])
            task = following
        return None


def _until(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """Poll ``fetch`` until ``done`` holds for what it returns (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still waiting after {timeout} s: {value}"
        time.sleep(0.1)


def _rounds(admin: httpx.Client, job: str = "auto") -> list[dict[str, Any]]:
    reply = admin.get(f"/api/labeling/jobs/{job}/rounds")
    assert reply.status_code == 200, reply.text
    assert reply.json()["job"] == job
    return reply.json()["rounds"]


def test_rounds_advance_after_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    auto = AutoJob(home)
    jobs, truth = auto.jobs, auto.truth
    with running_server(home, "operator-token") as url, httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {auto.token}"},
            timeout=120) as client:
        reply = client.post("/api/labeling/jobs/auto/next")
        answered = 0
        deadline = time.monotonic() + 120
        while True:
            if reply.status_code == 204:  # none right now: a round may be choosing a batch
                listed = {j["name"]: j for j in client.get("/api/labeling/jobs").json()}
                if listed["auto"]["status"] != JobStatus.IN_PROGRESS.value:
                    break
                assert time.monotonic() < deadline, listed["auto"]
                time.sleep(0.1)
                reply = client.post("/api/labeling/jobs/auto/next")
                continue
            assert reply.status_code in (200, 201), reply.text
            task = reply.json().get("next", reply.json())
            reply = client.post(f"/api/labeling/jobs/auto/tasks/{task['item_id']}/answer",
                                params={"next": "true"}, json={"answer": truth[task["source"]]})
            answered += 1
        listed = listed["auto"]
        jobs.workforce.add_worker("lead", role="admin")
        with httpx.Client(base_url=url) as browser:  # the admin page shows the rounds
            secret = jobs.workforce.issue_login_link("lead")
            page = browser.get(f"/login/{secret}")
            token_field = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            browser.post(f"/login/{secret}", data={"csrf_token": token_field})
            board = browser.get("/admin/jobs/auto").text
        assert 'id="rounds"' in board and "autolabel-auto:1" in board
    spec = jobs.job("auto")
    assert spec.status is JobStatus.COMPLETED and listed["status"] == "Completed"
    rounds = AutoLabeler(jobs, home=home).rounds("auto")
    assert len(rounds) >= 2 and rounds[0].human_labels == FIRST_BATCH
    assert answered == spec.counts["human-labeled"] > FIRST_BATCH  # later batches reached people
    assert spec.counts["machine-labeled"] == sum(r.machine_labels for r in rounds) > 0
    assert listed["machine-labeled"] == spec.counts["machine-labeled"]


def test_rounds_endpoint_for_admins(tmp_path: Path) -> None:
    home = tmp_path / "home"
    auto = AutoJob(home)
    auto.jobs.create_job(JobSpec("plain", "crowd", LABELS), ["fine", "awful"])
    auto.answer_open_items()  # the first round is due, and nobody has started it yet
    with running_server(home, "operator-token") as url, httpx.Client(
            base_url=url, headers={"Authorization": "Bearer operator-token"}) as admin, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {auto.token}"}) as ana:
        assert _rounds(admin) == []
        # Asking for a task finds none, and starts the missed round in the background.
        assert ana.post("/api/labeling/jobs/auto/next").status_code == 204
        rounds = _until(lambda: _rounds(admin), lambda found: len(found) == 1)
        assert rounds == [r.to_dict() for r in AutoLabeler(auto.jobs, home=home).rounds("auto")]
        first = rounds[0]
        assert first["round"] == 1 and first["human_labels"] == FIRST_BATCH
        assert first["sent_to_people"] == 100 and first["model_version"] == "autolabel-auto:1"

        refused = ana.get("/api/labeling/jobs/auto/rounds")
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "PermissionDenied"
        missing = admin.get("/api/labeling/jobs/nope/rounds")
        assert missing.status_code == 404, missing.text
        plain = admin.get("/api/labeling/jobs/plain/rounds")
        assert plain.status_code == 409 and "automated labeling" in plain.json()["error"][
            "message"]


def test_closing_answer_starts_the_round_in_the_background(tmp_path: Path) -> None:
    home = tmp_path / "home"
    auto = AutoJob(home)
    last = auto.answer_open_items(keep_last=True)
    assert last is not None
    with running_server(home, "operator-token") as url, httpx.Client(
            base_url=url, headers={"Authorization": "Bearer operator-token"}) as admin, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {auto.token}"},
                         timeout=30) as ana:
        assert _rounds(admin) == []
        closing = ana.post(f"/api/labeling/jobs/auto/tasks/{last.item_id}/answer",
                           params={"next": "true"}, json={"answer": auto.truth[last.source]})
        # Recorded, and no task in the reply: the round was not run inside the request
        # (when it was, the reply carried the first task of the next batch).
        assert closing.status_code == 204, closing.text
        rounds = _until(lambda: _rounds(admin), lambda found: len(found) == 1)
        assert rounds[0]["human_labels"] == FIRST_BATCH and rounds[0]["sent_to_people"] == 100
        # The job goes on: the round opened the next batch for people.
        reply = ana.post("/api/labeling/jobs/auto/next")
        assert reply.status_code == 200, reply.text
        assert reply.json()["source"] in auto.truth
    spec = auto.jobs.job("auto")
    assert spec.status is JobStatus.IN_PROGRESS and spec.counts["human-labeled"] == FIRST_BATCH


def test_task_page_says_work_comes_back_while_a_round_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    auto = AutoJob(home)
    auto.answer_open_items()  # a round is due; the page finds nothing to label
    with running_server(home, "operator-token") as url, httpx.Client(
            base_url=url, headers={"Authorization": "Bearer operator-token"}) as admin, \
            httpx.Client(base_url=url) as browser:
        secret = auto.jobs.workforce.issue_login_link("ana")
        page = browser.get(f"/login/{secret}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        browser.post(f"/login/{secret}", data={"csrf_token": csrf})
        waiting = browser.get("/jobs/auto")
        assert waiting.status_code == 200 and 'id="nothing-left"' in waiting.text
        assert "more work will be back here shortly" in waiting.text
        _until(lambda: _rounds(admin), lambda found: len(found) == 1)  # the page started it
        task_page = browser.get("/jobs/auto")
        assert 'id="nothing-left"' not in task_page.text
        assert "back here shortly" not in task_page.text
