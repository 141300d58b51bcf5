"""The JSON API, in-process and as a real `loopworks serve` subprocess."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from loopworks.featurestore import FeatureStore
from loopworks.server import create_app

from conftest import running_server

TOKEN = "test-token-123"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    with FeatureStore(home=home) as store:
        group = store.create_feature_group(
            "reviews", record_id="review_id", event_time="date", description="reviews",
            df=pd.DataFrame({"review_id": ["a"], "date": [datetime(2024, 1, 1, tzinfo=UTC)],
                             "sentiment": [1], "input_ids": [[101, 7, 102]]}))
        group.ingest(pd.DataFrame({
            "review_id": ["a", "b"], "date": [datetime(2024, 1, 1, tzinfo=UTC)] * 2,
            "sentiment": [1, -1], "input_ids": [[101, 7, 102], [101, 8, 102]]}))
    return home


@pytest.fixture
def client(home: Path):
    with FeatureStore(home=home) as store:
        yield TestClient(create_app(store, api_token=TOKEN),
                         headers={"Authorization": f"Bearer {TOKEN}"})


def test_every_api_route_needs_the_token(client: TestClient) -> None:
    paths = ["/api/feature-groups", "/api/feature-groups/reviews",
             "/api/feature-groups/reviews/records/a", "/api/feature-groups/search?q=rev"]
    for path in paths:
        assert client.get(path, headers={"Authorization": ""}).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path).status_code == 200, path
    assert client.post("/api/feature-groups/reviews/records/batch-get",
                       json={"ids": ["a"]}, headers={"Authorization": ""}).status_code == 401


def test_records_and_errors(client: TestClient) -> None:
    record = client.get("/api/feature-groups/reviews/records/a").json()
    assert record["sentiment"] == 1 and record["input_ids"] == [101, 7, 102]
    assert record["date"].startswith("2024-01-01T00:00:00")
    subset = client.get("/api/feature-groups/reviews/records/a?feature=sentiment").json()
    assert "input_ids" not in subset
    batch = client.post("/api/feature-groups/reviews/records/batch-get",
                        json={"ids": ["b", "zz", "a"]}).json()["records"]
    assert [r and r["review_id"] for r in batch] == ["b", None, "a"]
    missing = client.get("/api/feature-groups/reviews/records/zz")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
    assert client.get("/api/feature-groups/nope").status_code == 404
    bad = client.get("/api/feature-groups/reviews/records/a?feature=nope")
    assert bad.status_code == 404 and "nope" in bad.json()["error"]["message"]
    hits = client.get("/api/feature-groups/search?q=input").json()
    assert hits[0]["feature"] == "input_ids"


def test_the_fast_read_answers_as_the_route_does(client: TestClient) -> None:
    """The online read is served ahead of the framework when it succeeds; a request with a
    parameter the fast path does not take goes through the route: both answer alike."""
    for query in ("", "?feature=sentiment&feature=input_ids"):
        fast = client.get(f"/api/feature-groups/reviews/records/a{query}")
        routed = client.get(f"/api/feature-groups/reviews/records/a{query}"
                            + ("&" if query else "?") + "unused=1")
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content
        assert dict(fast.headers) == dict(routed.headers)
    body = {"ids": ["b", "zz", "a"], "features": ["sentiment", "input_ids"]}
    fast = client.post("/api/feature-groups/reviews/records/batch-get", json=body)
    routed = client.post("/api/feature-groups/reviews/records/batch-get",
                         json={**body, "unused": 1})
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content and dict(fast.headers) == dict(routed.headers)
    assert fast.json()["records"][1] is None
    # What the fast path does not take, the route answers as it always has.
    assert client.post("/api/feature-groups/reviews/records/batch-get",
                       json={"ids": [1, 2]}).status_code == 422
    assert client.post("/api/feature-groups/reviews/records/batch-get",
                       content=b'{"ids": ["\\ud800"]}',
                       headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/api/feature-groups/nope/records/batch-get",
                       json={"ids": ["a"]}).status_code == 404


def test_real_server_serves_records_over_http(home: Path) -> None:
    with running_server(home, TOKEN) as url:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        record = httpx.get(f"{url}/api/feature-groups/reviews/records/b", headers=headers)
        assert record.status_code == 200 and record.json()["sentiment"] == -1
        assert httpx.get(f"{url}/api/feature-groups/reviews/records/b").status_code == 401
        assert httpx.get(f"{url}/docs").status_code == 200


def test_worker_tokens_and_roles(home: Path) -> None:
    from loopworks.labeling.workforce import Workforce

    with FeatureStore(home=home) as store:
        workforce = Workforce(store.registry.engine)
        workforce.add_worker("scientist", "admin")
        workforce.add_worker("ana", "annotator")
        admin_token = workforce.issue_api_token("scientist")
        annotator_token = workforce.issue_api_token("ana")
        client = TestClient(create_app(store, api_token=TOKEN))
        path = "/api/feature-groups/reviews/records/a"
        ok = client.get(path, headers={"Authorization": f"Bearer {admin_token}"})
        assert ok.status_code == 200
        denied = client.get(path, headers={"Authorization": f"Bearer {annotator_token}"})
        assert denied.status_code == 403 and "may not read" in denied.json()["error"]["message"]
        workforce.deactivate("scientist")
        assert client.get(path, headers={"Authorization": f"Bearer {admin_token}"}
                          ).status_code == 401
