"""Automated labeling through the labeling API of a real `loopworks serve`: the answer that
closes a round runs the next one, and its reply already carries the next batch's task."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from loopworks.labeling.autolabel import AutoLabeler
from loopworks.labeling.jobs import JobSpec, JobStatus, LabelingJobs
from loopworks.metadata import database_url, open_engine
from loopworks.samples import generate_reviews

from conftest import running_server

LABELS = ["negative", "neutral", "positive"]


def test_rounds_advance_after_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    table = generate_reviews(1250, seed=2, broken=False).to_pandas()
    truth = {text: LABELS[0] if stars <= 2 else LABELS[1] if stars == 3 else LABELS[2]
             for text, stars in zip(table.review_body, table.star_rating, strict=True)}
    jobs.workforce.add_team("crowd")
    jobs.create_job(JobSpec("auto", "crowd", LABELS, auto_label={"batch_size": 100}),
                    list(table.review_body))
    jobs.workforce.add_worker("ana", teams_=["crowd"])
    token = jobs.workforce.issue_api_token("ana")
    with running_server(home, "operator-token") as url, httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        reply = client.post("/api/labeling/jobs/auto/next")
        answered = 0
        while reply.status_code != 204:
            assert reply.status_code in (200, 201), reply.text
            task = reply.json().get("next", reply.json())
            reply = client.post(f"/api/labeling/jobs/auto/tasks/{task['item_id']}/answer",
                                params={"next": "true"}, json={"answer": truth[task["source"]]})
            answered += 1
        listed = {j["name"]: j for j in client.get("/api/labeling/jobs").json()}["auto"]
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
    assert len(rounds) >= 2 and rounds[0].human_labels == 250 + 125
    assert answered == spec.counts["human-labeled"] > 375  # later batches reached people
    assert spec.counts["machine-labeled"] == sum(r.machine_labels for r in rounds) > 0
    assert listed["machine-labeled"] == spec.counts["machine-labeled"]
