"""Shared pieces of the browser tests (a pytest plugin, see tests/conftest.py): Playwright
driving Debian's Chromium.

Needs /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it) and the
`playwright` package (dev extra); tests that use `needs_browser` skip with the reason when
either is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

needs_browser = [
    pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
    pytest.mark.browser,
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (dev extra)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest):
    context = browser.new_context(viewport={"width": 1100, "height": 800},
                                  accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def snap(page, name: str) -> None:
    """Keep a screenshot of the page as it is now (tests/artifacts/, ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, url: str, workforce: Any, worker: str) -> None:
    """Sign in through a fresh one-time login link, as a person would."""
    page.goto(f"{url}/login/{workforce.issue_login_link(worker)}")
    page.click("#sign-in")
    page.wait_for_selector("#who")
    assert worker in page.inner_text("#who")


def select_words(page, box: str, words: str) -> None:
    """Select words in a text with the mouse: press before the first letter, drag past
    the last (the letters' position on screen comes from the page)."""
    rect = page.evaluate("""([selector, words]) => {
        const box = document.querySelector(selector);
        const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            if (node.parentElement.closest('[data-badge]')) continue;
            const at = node.data.indexOf(words);
            if (at < 0) continue;
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + words.length);
            const r = range.getBoundingClientRect();
            return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};
        }
        return null;
    }""", [box, words])
    assert rect, f"{words!r} is not on the page"
    y = (rect["top"] + rect["bottom"]) / 2
    page.mouse.move(rect["left"] + 1, y)
    page.mouse.down()
    page.mouse.move(rect["right"] - 1, y, steps=4)
    page.mouse.up()
