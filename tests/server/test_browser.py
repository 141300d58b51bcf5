"""A real annotator in a real browser: Playwright driving Debian's Chromium against
`loopworks serve`. Sign in with the link, label with the keyboard, skip, draw spans and boxes,
watch the progress move; an admin opens the dashboard.

Needs /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it) and the
`playwright` package (dev extra); skipped with the reason when either is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.metadata import database_url, open_engine

from _browser import needs_browser, select_words, sign_in, snap
from conftest import running_server

pytestmark = needs_browser


@pytest.fixture
def site(tmp_path: Path):
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_team("nlp")
    jobs.workforce.add_worker("ana", teams_=["nlp"])
    jobs.workforce.add_worker("boss", role="admin")
    with running_server(home, "operator-token") as url:
        yield url, jobs


def test_label_with_the_keyboard_and_see_progress(page, site) -> None:
    """A built-in task type's page is its crowd-html template: number keys choose, Enter
    submits, S skips, and the answer is stored in the task type's own shape."""
    url, jobs = site
    jobs.create_job(JobSpec("sent", "nlp", ["negative", "neutral", "positive"],
                            instructions="How does the reviewer feel?"),
                    ["I love this dress", "It is fine", "Broke in a day",
                     "<script>window.pwned = 1</script>Sneaky <b>bold</b>"])
    sign_in(page, url, jobs.workforce, "ana")
    page.click("text=sent")
    # Opening the job leases nothing; Enter (the focused Start button) takes a task.
    assert page.inner_text("#progress") == "0 / 4" and jobs.current_task(
        "sent", jobs.workforce.worker("ana")) is None
    page.keyboard.press("Enter")
    page.wait_for_selector("classification-target")
    assert page.inner_text("classification-target") == "I love this dress"
    assert page.inner_text("#progress") == "0 / 4" and page.inner_text("#mine") == "0"
    assert "How does the reviewer feel?" in page.inner_text(".instructions")

    page.keyboard.press("3")
    assert page.get_by_role("radio", name="positive").is_checked()
    snap(page, "classification-task")
    page.keyboard.press("Enter")
    page.wait_for_selector("#flash")
    assert page.inner_text("#flash") == "Saved."
    assert page.inner_text("#progress") == "1 / 4" and page.inner_text("#mine") == "1"
    assert page.inner_text("classification-target") == "It is fine"

    page.keyboard.press("s")  # skip "It is fine"
    page.wait_for_selector("text=Skipped.")
    assert page.inner_text("classification-target") == "Broke in a day"
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Saved.")
    assert page.inner_text("#mine") == "2"

    # User text is shown as text: the script is visible and never ran.
    assert page.inner_text("classification-target") == \
        "<script>window.pwned = 1</script>Sneaky <b>bold</b>"
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("classification-target script, classification-target b").count() == 0
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#nothing-left")
    assert page.inner_text("#progress") == "3 / 4"  # the skipped item waits for others

    given = jobs.answers("sent")
    assert {a["answer"] for a in given} == {"positive", "negative", "neutral"}
    assert {a["form"]["label"]["label"] for a in given} == {"positive", "negative", "neutral"}


def test_admin_dashboard_renders_the_chart(page, site) -> None:
    url, jobs = site
    jobs.create_job(JobSpec("sent", "nlp", ["negative", "positive"]), ["good", "bad", "ok"])
    ana = jobs.workforce.worker("ana")
    for answer in ["positive", "negative"]:
        task = jobs.next_task("sent", ana)
        assert task is not None
        jobs.submit("sent", task.item_id, ana, answer)
    sign_in(page, url, jobs.workforce, "boss")
    page.click("text=dashboard")
    assert page.inner_text("#labeled") == "2"
    assert page.locator("#progress-chart polyline").count() == 1
    bars = page.locator("#answer-chart rect")
    assert bars.count() == 2
    assert all(float(bars.nth(i).get_attribute("width")) > 0 for i in range(2))
    with page.expect_download() as download:
        page.click("#export")
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 3


def test_draw_entity_spans_with_the_mouse(page, site) -> None:
    url, jobs = site
    text = "Alice bought the red dress in Paris"
    jobs.create_job(JobSpec("ner", "nlp", ["PERSON", "PRODUCT", "PLACE"],
                            task_type="named-entity-recognition"), [text])
    sign_in(page, url, jobs.workforce, "ana")
    page.goto(f"{url}/jobs/ner")
    page.click("#start")
    page.wait_for_selector(".crowd-entity-text")
    page.keyboard.press("1")
    select_words(page, ".crowd-entity-text", "Alice")
    page.keyboard.press("3")
    select_words(page, ".crowd-entity-text", "Paris")
    assert page.locator("mark").count() == 2
    assert page.locator("mark", has_text="Paris").inner_text().startswith("Paris")
    snap(page, "ner-task")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_selector("#nothing-left")
    [answer] = jobs.answers("ner")
    spans = [(e["start"], e["end"], e["label"]) for e in answer["answer"]["entities"]]
    assert spans == [(0, 5, "PERSON"), (text.index("Paris"), len(text), "PLACE")]


def test_draw_a_bounding_box(page, site, tmp_path: Path) -> None:
    import json

    import matplotlib.image
    import numpy as np

    url, jobs = site
    pixels = np.zeros((300, 400, 3), dtype=np.uint8)
    pixels[40:120, 50:150] = (220, 40, 40)  # a red "car"
    matplotlib.image.imsave(tmp_path / "street.png", pixels)
    manifest = tmp_path / "images.manifest"
    manifest.write_text(json.dumps({"source-ref": "street.png"}) + "\n")
    jobs.create_job(JobSpec("boxes", "nlp", ["car", "person"], task_type="bounding-box"),
                    manifest)
    sign_in(page, url, jobs.workforce, "ana")
    page.goto(f"{url}/jobs/boxes")
    page.click("#start")
    # Polled from Python: wait_for_function's in-page polling evaluates a string, which the
    # pages' Content Security Policy (no 'unsafe-eval') rightly refuses.
    image = ".crowd-stage img"
    page.wait_for_selector(image)
    deadline = time.monotonic() + 10
    while not page.evaluate("document.querySelector('.crowd-stage img').naturalWidth > 0"):
        assert time.monotonic() < deadline, "the task image never loaded"
        page.wait_for_timeout(50)
    page.keyboard.press("1")
    stage = page.locator(image).bounding_box()
    scale = page.evaluate("(() => { const i = document.querySelector('.crowd-stage img');"
                          " return i.naturalWidth / i.clientWidth; })()")
    page.mouse.move(stage["x"] + 50 / scale, stage["y"] + 40 / scale)
    page.mouse.down()
    page.mouse.move(stage["x"] + 150 / scale, stage["y"] + 120 / scale, steps=8)
    page.mouse.up()
    snap(page, "bounding-box-task")
    page.keyboard.press("Enter")
    page.wait_for_selector("#nothing-left")
    [answer] = jobs.answers("boxes")
    [box] = answer["answer"]["boundingBoxes"]
    assert box["label"] == "car"
    assert [box["left"], box["top"], box["width"], box["height"]] == \
        pytest.approx([50, 40, 100, 80], abs=2)
    assert answer["form"]["boxes"]["inputImageProperties"] == {"height": 300, "width": 400}


def test_review_a_model_prediction(page, site, tmp_path: Path) -> None:
    from loopworks.review.flows import FlowDefinition, HumanReview

    url, jobs = site
    jobs.workforce.add_worker("rita", "reviewer", teams_=["nlp"])
    review = HumanReview(jobs.engine, jobs)
    review.create_flow(FlowDefinition(
        "check", "nlp", ["negative", "neutral", "positive"], str(tmp_path / "out"),
        title="Check the sentiment model", activation_conditions={"Conditions": [{
            "ConditionType": "ClassificationConfidenceCheck",
            "ConditionParameters": {"ClassificationLabel": "*", "ConfidenceLessThan": 0.8}}]}))
    for name, text, probs in [("agree", "Pretty good overall", [0.1, 0.3, 0.6]),
                              ("fix", "Terrible, it broke", [0.2, 0.45, 0.35])]:
        result = review.start_human_loop(name, "check", {
            "text": text, "probabilities": dict(zip(["negative", "neutral", "positive"],
                                                    probs, strict=True))})
        assert result.started
    sign_in(page, url, jobs.workforce, "rita")
    page.click("text=review-check")
    page.click("#start")
    assert page.inner_text("#source") == "Pretty good overall"
    assert page.inner_text("#model-label") == "positive"
    snap(page, "review-task")
    page.keyboard.press("Enter")  # agree with the model
    page.wait_for_selector("text=Saved.")
    assert page.inner_text("#model-label") == "neutral"
    page.keyboard.press("1")  # correct it: negative
    page.keyboard.press("Enter")
    page.wait_for_selector("#nothing-left")
    agreed = review.describe_human_loop("agree", "check")
    fixed = review.describe_human_loop("fix", "check")
    assert agreed.status.value == fixed.status.value == "Completed"
    assert agreed.result["label"] == "positive" and agreed.result["agreesWithModel"]
    assert fixed.result["label"] == "negative" and not fixed.result["agreesWithModel"]

    page.goto(f"{url}/logout")  # a GET does not sign out (no CSRF token)
    page.context.clear_cookies()
    sign_in(page, url, jobs.workforce, "boss")
    page.click("text=Review flows")
    page.click("text=Check the sentiment model")
    assert page.inner_text("#reviewed") == "2"
    assert page.inner_text("#model-accuracy") == "0.500"
    assert page.locator("#status-chart rect").count() == 5
    assert page.locator("#share-chart rect").count() == 2
    assert page.locator("#completed-chart polyline").count() == 1
    snap(page, "review-dashboard")


def test_markup_from_task_input_cannot_move_the_reviewer_away(page, site,
                                                               tmp_path: Path) -> None:
    """A flow's own template may mark a value |safe; the value comes from task input, so
    what could act on the page (a <meta> refresh, a form, a script) is cleaned out."""
    from loopworks.review.flows import FlowDefinition, HumanReview

    url, jobs = site
    jobs.workforce.add_worker("rita", "reviewer", teams_=["nlp"])
    review = HumanReview(jobs.engine, jobs)
    review.create_flow(FlowDefinition(
        "markup", "nlp", ["negative", "positive"], str(tmp_path / "out"),
        template="<div id='shown'>{{ input.html|safe }}</div><p>{{ text }}</p>"))
    review.start_human_loop("l1", "markup", {
        "text": "check this", "probabilities": [0.4, 0.6],
        "html": '<meta http-equiv="refresh" content="0;url=/login?moved=1"><i>kept</i>'
                '<form action="/logout" method="post"><button id="trap">go</button></form>'})
    sign_in(page, url, jobs.workforce, "rita")
    page.goto(f"{url}/jobs/review-markup")
    page.click("#start")
    page.wait_for_selector("#shown i")
    page.wait_for_load_state("load")
    assert page.inner_text("#shown i") == "kept"
    assert page.locator("meta[http-equiv]").count() == 0
    assert page.locator("#trap").count() == 0 and "moved" not in page.url
    assert page.url.endswith("/jobs/review-markup")
