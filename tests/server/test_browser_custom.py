"""A custom labeling job in a real browser: the job's own Liquid template with crowd-html
elements (Ground Truth's custom workflows), rendered by `loopworks serve` with loopworks'
own elements; a person picks with the keyboard and submits; the answer is the form's JSON.
The template's own script and style run (the page's nonce); task input never becomes markup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loopworks.labeling.jobs import JobSpec, LabelingJobs, TaskType
from loopworks.metadata import database_url, open_engine

from _browser import needs_browser, sign_in, snap
from conftest import running_server

pytestmark = needs_browser

TEMPLATE = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<style>.shop-note { font-style: italic; }</style>
<script>window.templateRan = true;</script>
<crowd-form>
  <p class="shop-note">Shop: {{ task.input.shop }}</p>
  <crowd-classifier name="sentiment" categories="['-1', '0', '1']"
                    header="What does the review say about the product?">
    <classification-target>{{ task.input.taskObject }}</classification-target>
    <short-instructions>Negative (-1), neutral (0) or positive (1).</short-instructions>
  </crowd-classifier>
</crowd-form>
"""


@pytest.fixture
def site(tmp_path: Path):
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_team("nlp")
    jobs.workforce.add_worker("ana", teams_=["nlp"])
    with running_server(home, "operator-token") as url:
        yield url, jobs


def test_a_custom_template_is_answered_with_the_keyboard(page, site) -> None:
    url, jobs = site
    jobs.create_job(JobSpec("custom-sent", "nlp", [], TaskType.CUSTOM, template=TEMPLATE),
                    [("I love this dress", {"source": "I love this dress", "shop": "North"}),
                     ('<img src=x onerror="window.pwned=1">Broke in a day',
                      {"source": "x", "shop": "<b>South</b>"})])
    sign_in(page, url, jobs.workforce, "ana")
    page.click("text=custom-sent")
    page.wait_for_selector("#start:focus")  # the job's page is there, Start focused
    page.keyboard.press("Enter")  # Start: lease a task
    page.wait_for_selector("crowd-classifier")
    assert "I love this dress" in page.inner_text("#custom-form")
    assert page.inner_text(".shop-note") == "Shop: North"
    assert page.evaluate("window.templateRan") is True  # the template's script, by nonce
    snap(page, "custom-template-task")
    page.keyboard.press("3")  # the third category, "1"
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Saved.")
    assert [a["answer"] for a in jobs.answers("custom-sent")] == [{"sentiment": {"label": "1"}}]

    # The second task's input is shown as text: no image element, no script ran.
    page.wait_for_selector("crowd-classifier")
    text = page.inner_text("#custom-form")
    assert '<img src=x onerror="window.pwned=1">Broke in a day' in text
    assert "Shop: <b>South</b>" in text
    assert page.locator("#custom-form img, #custom-form b").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector("#nothing-left")
    answers = sorted(a["answer"]["sentiment"]["label"] for a in jobs.answers("custom-sent"))
    assert answers == ["-1", "1"]


def _png(width: int, height: int) -> bytes:
    """A small solid PNG, made here."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x20\x80\xc0" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                             0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


IMAGE_TEMPLATE = """<crowd-form>
  <img id="photo" src="{{ task.input.taskObject | grant_read_access }}" alt="the photo">
  <crowd-classifier name="animal" categories="['cat', 'dog']" header="Which animal?">
    <classification-target>{{ task.input.taskObject }}</classification-target>
  </crowd-classifier>
</crowd-form>
"""


def test_grant_read_access_shows_an_object_of_the_store_to_the_tasks_holder(page, site
                                                                            ) -> None:
    import loopworks

    url, jobs = site
    home = Path(jobs.engine.url.database).parent
    with loopworks.open(home) as lw:
        lw.objects.create_bucket("photos")
        lw.objects.put_bytes("photos", "cat.png", _png(40, 30), content_type="image/png")
        lw.objects.put_bytes("photos", "secret.png", _png(2, 2), content_type="image/png")
    jobs.create_job(JobSpec("custom-photos", "nlp", [], TaskType.CUSTOM,
                            template=IMAGE_TEMPLATE), ["s3://photos/cat.png"])
    sign_in(page, url, jobs.workforce, "ana")
    page.goto(f"{url}/jobs/custom-photos")
    page.click("#start-form button")
    page.wait_for_selector("crowd-classifier")
    page.wait_for_function("document.getElementById('photo').complete")
    assert page.evaluate("document.getElementById('photo').naturalWidth") == 40
    task = jobs.current_task("custom-photos", jobs.workforce.worker("ana"))
    base = f"{url}/jobs/custom-photos/tasks/{task.item_id}/object?uri="
    assert page.request.get(base + "s3%3A%2F%2Fphotos%2Fcat.png").status == 200
    # Only what the task's input names, and only for the worker who holds it.
    assert page.request.get(base + "s3%3A%2F%2Fphotos%2Fsecret.png").status == 403
    assert page.request.get(f"{url}/jobs/custom-photos/tasks/{task.item_id + 1}/object?uri="
                            "s3%3A%2F%2Fphotos%2Fcat.png").status == 404
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Saved.")
    assert jobs.answers("custom-photos")[0]["answer"] == {"animal": {"label": "cat"}}
