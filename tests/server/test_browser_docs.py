"""The API docs in a real Chromium against `loopworks serve`: Swagger UI renders from this
server's files alone, under the page's Content-Security-Policy.

Needs /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it) and the
`playwright` package (dev extra); skipped with the reason when either is missing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _browser import needs_browser, snap
from conftest import running_server

pytestmark = needs_browser


@pytest.fixture
def url(tmp_path: Path):
    with running_server(tmp_path / "home", "operator-token") as url:
        yield url


def test_swagger_ui_renders_without_leaving_the_server(page, url: str) -> None:
    requests: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(f"{url}/docs")
    page.wait_for_selector(".opblock-tag")  # Swagger UI drew the operations
    assert page.locator(".opblock-summary-path", has_text="/api/feature-groups").count() > 0
    assert page.locator(".swagger-ui .info .title", has_text="loopworks").count() == 1
    page.locator(".opblock-summary-path", has_text="/api/feature-groups").first.click()
    page.wait_for_selector(".opblock-body")  # it reacts: an operation opens
    snap(page, "api-docs")
    assert f"{url}/openapi.json" in requests
    elsewhere = [r for r in requests if not r.startswith(f"{url}/") and r != url]
    assert not elsewhere, f"the docs page fetched from outside the server: {elsewhere}"
    assert not blocked, f"the page broke its own Content-Security-Policy: {blocked}"
