"""Many annotators at once against a real `loopworks serve`: no duplicates, exact quotas."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.metadata import database_url, open_engine

from conftest import running_server

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def server(tmp_path: Path):
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    with running_server(home, "operator-token") as url:
        yield url, jobs


def test_hundred_concurrent_workers(server, tmp_path: Path) -> None:
    url, jobs = server
    n_items, per_item, n_workers = 150, 3, 100
    manifest = tmp_path / "in.manifest"
    manifest.write_text("".join(json.dumps({"source": f"text {i}"}) + "\n"
                                for i in range(n_items)))
    jobs.workforce.add_team("crowd")
    jobs.workforce.add_team("others")
    jobs.create_job(JobSpec("big", "crowd", LABELS, workers_per_item=per_item), manifest)
    tokens = []
    for i in range(n_workers):
        jobs.workforce.add_worker(f"w{i}", teams_=["crowd"])
        tokens.append(jobs.workforce.issue_api_token(f"w{i}"))
    jobs.workforce.add_worker("outsider", teams_=["others"])
    outsider = jobs.workforce.issue_api_token("outsider")

    def work(token: str) -> int:
        done = 0
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as client:
            while True:
                task = client.post("/api/labeling/jobs/big/next")
                if task.status_code == 204:
                    return done
                assert task.status_code == 200, task.text
                item = task.json()
                answer = client.post(f"/api/labeling/jobs/big/tasks/{item['item_id']}/answer",
                                     json={"answer": LABELS[item["item_id"] % 3]})
                assert answer.status_code == 201, answer.text
                done += 1

    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        counts = list(pool.map(work, tokens))
    assert sum(counts) == n_items * per_item
    answers = jobs.answers("big")
    pairs = [(a["item_id"], a["worker"]) for a in answers]
    assert len(pairs) == len(set(pairs)) == n_items * per_item  # none twice, none lost
    per_item_counts: dict[int, int] = {}
    for item_id, _ in pairs:
        per_item_counts[item_id] = per_item_counts.get(item_id, 0) + 1
    assert set(per_item_counts.values()) == {per_item}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {outsider}"}) as client:
        denied = client.post("/api/labeling/jobs/big/next")
        assert denied.status_code == 403
        assert client.get("/api/labeling/jobs").json() == []  # sees only its teams' jobs
    assert httpx.post(f"{url}/api/labeling/jobs/big/next").status_code == 401
    bad = httpx.post(f"{url}/api/labeling/jobs/big/tasks/1/answer", json={"answer": "x"},
                     headers={"Authorization": f"Bearer {tokens[0]}"})
    assert bad.status_code in (409, 422)
