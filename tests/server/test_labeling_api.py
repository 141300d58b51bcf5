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


def test_answer_and_next_in_one_request_and_admin_routes(server, tmp_path: Path) -> None:
    url, jobs = server
    jobs.workforce.add_team("crowd")
    jobs.create_job(JobSpec("small", "crowd", LABELS, examples=[{"source": "meh",
                                                                 "answer": "neutral"}]),
                    [("first", {"source": "first", "gold": "positive"}), "second"])
    jobs.workforce.add_worker("ana", teams_=["crowd"])
    jobs.workforce.add_worker("lead", role="admin")
    ana = {"Authorization": f"Bearer {jobs.workforce.issue_api_token('ana')}"}
    lead = {"Authorization": f"Bearer {jobs.workforce.issue_api_token('lead')}"}
    with httpx.Client(base_url=url) as client:
        task = client.post("/api/labeling/jobs/small/next", headers=ana).json()
        assert task["examples"] == [{"source": "meh", "answer": "neutral"}]
        assert "gold" not in json.dumps(task)  # the item's other fields stay on the server
        reply = client.post(f"/api/labeling/jobs/small/tasks/{task['item_id']}/answer",
                            params={"next": "true"}, json={"answer": "positive"}, headers=ana)
        assert reply.status_code == 201 and reply.json()["next"]["source"] == "second"
        assert client.post("/api/labeling/jobs/small/stop", headers=ana).status_code == 403
        added = client.post("/api/labeling/jobs/small/items", headers=lead,
                            json={"items": ["third", {"source": "fourth", "id": 4}]})
        assert added.status_code == 201 and added.json() == {"added": 2}
        assert client.post("/api/labeling/jobs/small/stop", headers=lead).json() == {
            "status": "Stopping"}  # ana still holds "second"
        last = client.post(f"/api/labeling/jobs/small/tasks/{reply.json()['next']['item_id']}"
                           "/answer", params={"next": "true"}, json={"answer": "negative"},
                           headers=ana)
        assert last.status_code == 204  # recorded; nothing more: the job is stopping
        assert [a["answer"] for a in jobs.answers("small")] == ["positive", "negative"]
        assert jobs.job("small").status.value == "Stopped"
        assert client.get("/api/labeling/jobs/small/webhooks", headers=lead).json() == []


def test_image_tasks_give_a_url_not_a_server_path(server, tmp_path: Path) -> None:
    import matplotlib.image
    import numpy as np

    url, jobs = server
    jobs.workforce.add_team("vision")
    jobs.workforce.add_team("others")
    matplotlib.image.imsave(tmp_path / "cat.png", np.zeros((8, 8, 3), dtype=np.uint8))
    (tmp_path / "images.manifest").write_text(json.dumps({"source-ref": "cat.png"}) + "\n")
    jobs.create_job(JobSpec("pics", "vision", ["cat", "dog"], task_type="image-classification"),
                    tmp_path / "images.manifest")
    jobs.workforce.add_worker("vic", teams_=["vision"])
    jobs.workforce.add_worker("oz", teams_=["others"])
    vic = {"Authorization": f"Bearer {jobs.workforce.issue_api_token('vic')}"}
    oz = {"Authorization": f"Bearer {jobs.workforce.issue_api_token('oz')}"}
    with httpx.Client(base_url=url) as client:
        task = client.post("/api/labeling/jobs/pics/next", headers=vic).json()
        assert task["source"] is None and str(tmp_path) not in json.dumps(task)
        picture = client.get(task["image_url"], headers=vic)
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content[:4] == b"\x89PNG"
        assert client.get(task["image_url"], headers=oz).status_code == 403
