"""What every response promises browsers (nosniff), and API docs that load nothing from
another site, under a strict Content-Security-Policy. In-process; the same page in a real
Chromium is in test_browser_docs.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopworks.featurestore import FeatureStore
from loopworks.server import create_app

TOKEN = "test-token-123"


@pytest.fixture
def app(tmp_path: Path):
    with FeatureStore(home=tmp_path / "home") as store:
        yield create_app(store, api_token=TOKEN)


@pytest.fixture
def client(app) -> TestClient:
    return TestClient(app, follow_redirects=False)


def test_docs_reference_only_this_server_and_each_asset_is_served(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "img-src 'self' data:;" in policy and "default-src 'none'" in policy
    assert "unsafe" not in policy and "http" not in policy
    assert "<script>" not in page.text and "<style" not in page.text  # nothing inline
    urls = re.findall(r'(?:src|href|data-openapi-url)="([^"]*)"', page.text)
    assert len(urls) == 5, urls
    expected = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                ".json": "application/json"}
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url  # same origin
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(expected[Path(url).suffix]), url
        assert asset.headers["x-content-type-options"] == "nosniff", url
    assert "SwaggerUIBundle" in client.get("/docs/swagger-ui/swagger-ui-bundle.js").text


def test_only_the_docs_assets_are_served_and_redoc_is_off(client: TestClient) -> None:
    for path in ["/redoc", "/docs/oauth2-redirect", "/docs/swagger-ui/index.html",
                 "/docs/swagger-ui/swagger-initializer.js", "/docs/swagger-ui/..%2Fsetup.py"]:
        assert client.get(path).status_code == 404, path
    schema = client.get("/openapi.json").json()
    assert "/docs" not in schema["paths"] and "/api/feature-groups" in schema["paths"]


def test_nosniff_on_every_kind_of_response(app, client: TestClient) -> None:
    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("an unexpected failure")

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    responses = {
        "page": client.get("/login"),
        "API JSON": client.get("/api/feature-groups", headers=bearer),
        "static file": client.get("/static/app.css"),
        "API 404": client.get("/api/feature-groups/nope", headers=bearer),
        "page 404": client.get("/no/such/page"),
        "401": client.get("/api/feature-groups"),
        "redirect": client.get("/"),
        "HEAD": client.head("/healthz"),
    }
    unguarded = TestClient(app, raise_server_exceptions=False)
    responses["500"] = unguarded.get("/boom")  # Starlette's own error response
    statuses = {kind: r.status_code for kind, r in responses.items()}
    assert statuses == {"page": 200, "API JSON": 200, "static file": 200, "API 404": 404,
                        "page 404": 404, "401": 401, "redirect": 303, "HEAD": 405,
                        "500": 500}
    for kind, response in responses.items():
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], kind
