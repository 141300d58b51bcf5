"""Our crowd-html elements in a real browser: GT-style task templates (tests/data/
crowd_templates/) rendered with render_template, served by a tiny local site under a strict
Content-Security-Policy, worked through with clicks and keys, and the posted ``taskAnswers``
compared with the answer AWS documents for each element. Nothing may load from outside.
"""

from __future__ import annotations

import json
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

import loopworks
from loopworks.labeling.templates import render_template

from _browser import needs_browser, select_words, snap

pytestmark = needs_browser

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "crowd_templates"
ELEMENTS = Path(loopworks.__file__).parent / "server/static/crowd/crowd-html-elements.js"
ELEMENTS_URL = "/static/crowd/crowd-html-elements.js"
# What the task pages allow: scripts, styles and images from this site only, no inline script
# or style; the elements must work under it.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "form-action 'self'; base-uri 'none'")
WIDTH, HEIGHT = 240, 160


def png(width: int, height: int) -> bytes:
    """A small RGB PNG: a grey field with a darker square, made here with zlib."""
    def pixel(x: int, y: int) -> bytes:
        return b"\x40\x60\x90" if 60 <= x < 120 and 40 <= y < 100 else b"\xd0\xd0\xd0"

    rows = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


class TaskSite:
    """Rendered task pages, our elements script, one PNG, and every form posted back."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.posts: list[dict[str, list[str]]] = []
        self.image = png(WIDTH, HEIGHT)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def grant(uri: str) -> str:
        """grant_read_access as the site sees it: s3://bucket/key.png -> /images/key.png."""
        return f"/images/{uri.rsplit('/', 1)[-1]}"

    def open(self, page, name: str, task_input: dict[str, Any]) -> None:
        """Render a template for one task and open it in the browser."""
        body = render_template((TEMPLATES / f"{name}.liquid.html").read_text(), task_input,
                               elements_url=ELEMENTS_URL, grant_read_access=self.grant)
        self.pages[name] = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
                            f"<title>{name}</title></head><body>{body}</body></html>")
        page.goto(f"{self.url}/tasks/{name}")
        page.wait_for_selector("crowd-form .crowd-form-footer")

    def answers(self, page) -> list[Any]:
        """The taskAnswers of the form just posted (waits for the thank-you page)."""
        page.wait_for_selector("#thanks")
        return json.loads(self.posts[-1]["taskAnswers"][0])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == ELEMENTS_URL:
                    self._send(ELEMENTS.read_bytes(), "text/javascript")
                elif self.path.startswith("/images/") and self.path.endswith(".png"):
                    self._send(site.image, "image/png")
                elif self.path.startswith("/tasks/") and self.path[7:] in site.pages:
                    self._send(site.pages[self.path[7:]].encode(), "text/html; charset=utf-8")
                else:
                    self._send(b"not found", "text/plain", 404)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                site.posts.append(parse_qs(body.decode(), keep_blank_values=True))
                self._send(b'<!doctype html><p id="thanks">Thanks!</p>', "text/html")

            def _send(self, body: bytes, kind: str, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Security-Policy", CSP)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture(scope="module")
def site() -> Iterator[TaskSite]:
    site = TaskSite()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()


@pytest.fixture
def task(page, site: TaskSite):
    """The browser page; afterwards, nothing was fetched from outside the site and the
    Content-Security-Policy blocked nothing."""
    requests: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield page
    assert [url for url in requests if not url.startswith(site.url)] == []
    assert blocked == []


def stage_origin(page, nth: int = 0) -> tuple[float, float]:
    """Where an annotation image's top-left corner is on screen."""
    box = page.locator(".crowd-stage img").nth(nth).bounding_box()
    assert box and box["width"] == WIDTH, box  # shown at its natural size
    return box["x"], box["y"]


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=5)
    page.mouse.up()


# ---------------------------------------------------------------------- classification
def test_text_classification_by_number_key_and_enter(task, site: TaskSite) -> None:
    hostile = "<img src=x onerror=document.title='pwned'> My parcel never arrived & nobody answers"
    site.open(task, "text-classification",
              {"labels": ["Billing", "Shipping", "Other"], "source": hostile})
    # Task input stays text: shown as typed, never an element.
    assert task.inner_text("#ticket") == hostile
    assert task.locator("classification-target img").count() == 0
    # The elements' own styles apply under the CSP (a constructed style sheet).
    submit = task.get_by_role("button", name="Submit")
    assert submit.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(9, 114, 211)"
    task.keyboard.press("2")
    assert task.get_by_role("radio", name="Shipping").is_checked()
    snap(task, "crowd-text-classification")
    task.keyboard.press("Enter")
    assert site.answers(task) == [{"category": {"label": "Shipping"}}]
    assert task.title() != "pwned"


def test_review_sentiment_is_required_then_chosen_with_a_click(task, site: TaskSite) -> None:
    site.open(task, "review-sentiment", {"product": "Mugs & <Cups>", "title": "Lovely",
                                         "review": "Sturdy, and the handle stays cool."})
    assert task.inner_text(".crowd-header") == (
        "How many stars does this reviewer give Mugs & <Cups>?")
    posts = len(site.posts)
    task.get_by_role("button", name="Submit").click()
    errors = task.locator(".crowd-form-errors")
    assert errors.is_visible()
    assert "choose a category" in errors.inner_text()
    assert len(site.posts) == posts  # nothing sent
    task.get_by_role("radio", name="4").click()
    task.get_by_role("button", name="Submit").click()
    assert site.answers(task) == [{"sentiment": {"label": "4"}}]


def test_multi_label_with_keys_clicks_and_the_exclusion_category(task, site: TaskSite) -> None:
    site.open(task, "multi-label", {"labels": ["Politics", "Sport", "Science", "Weather"],
                                    "paragraphs": ["Parliament debated a heatwave plan.",
                                                   "Physicists measured the ice."]})
    task.keyboard.press("1")
    task.keyboard.press("3")
    task.get_by_role("checkbox", name="Sport").click()
    task.keyboard.press("2")  # and off again
    none = task.get_by_role("checkbox", name="None of these")
    none.click()  # excludes the others...
    assert [task.get_by_role("checkbox", name=n).is_checked()
            for n in ("Politics", "Science", "None of these")] == [False, False, True]
    task.keyboard.press("1")  # ...and they exclude it
    task.keyboard.press("3")
    assert not none.is_checked()
    task.keyboard.press("Control+Enter")
    assert site.answers(task) == [{"topics": {"labels": ["Politics", "Science"]}}]


def test_image_classification_with_a_worker_comment(task, site: TaskSite) -> None:
    site.open(task, "image-classification", {"taskObject": "s3://pets/dog.png"})
    image = task.locator(".crowd-figure img")
    assert image.get_attribute("src") == "/images/dog.png"  # granted, served by the site
    task.wait_for_function("document.querySelector('.crowd-figure img').naturalWidth > 0")
    task.get_by_role("radio", name="Dog").click()
    task.get_by_role("button", name="Explain your choice").click()
    task.get_by_label("Why this category?").fill("Floppy ears")
    task.keyboard.press("Enter")  # a new line in the comment, not a submit
    task.keyboard.press("Control+Enter")
    assert site.answers(task) == [{"category": {"label": "Dog", "workerComment": "Floppy ears"}}]


# ---------------------------------------------------------------------- spans and shapes
def test_named_entities_selected_with_the_mouse(task, site: TaskSite) -> None:
    text = "🙂 Ada Lovelace & Charles Babbage met in London in 1833."
    site.open(task, "named-entities", {"text": text})
    box = ".crowd-entity-text"
    assert task.inner_text(box) == text
    task.keyboard.press("1")  # Person
    select_words(task, box, "Ada Lovelace")
    select_words(task, box, "London")  # a slip: labeled Person...
    task.locator("mark", has_text="London").click()  # ...picked up again
    task.get_by_role("button", name="Place", exact=True).click()  # and relabeled
    task.get_by_role("button", name="Person", exact=True).click()
    select_words(task, box, "Charles Babbage")
    select_words(task, box, "met")
    task.get_by_role("button", name="Remove Person “met”").click()
    task.keyboard.press("3")
    select_words(task, box, "1833")
    assert task.locator("mark").all_inner_texts() == [
        "Ada Lovelace\nPER", "Charles Babbage\nPER", "London\nLOC", "1833\nyear"]
    snap(task, "crowd-named-entities")
    task.get_by_role("button", name="Submit").click()

    def span(words: str, label: str) -> dict[str, Any]:  # offsets in characters, as Python's
        start = text.index(words)
        return {"label": label, "startOffset": start, "endOffset": start + len(words)}

    assert site.answers(task) == [{"entities": {"entities": [
        span("Ada Lovelace", "person"), span("Charles Babbage", "person"),
        span("London", "place"), span("1833", "year")]}}]


def test_bounding_boxes_drawn_moved_and_removed(task, site: TaskSite) -> None:
    site.open(task, "bounding-box", {"taskObject": "s3://pets/cat.png", "labels": ["Cat", "Dog"]})
    task.wait_for_function("document.querySelector('.crowd-stage img').naturalWidth > 0")
    x, y = stage_origin(task)
    drag(task, (x + 20, y + 30), (x + 120, y + 90))  # Cat, the first label
    task.keyboard.press("2")
    drag(task, (x + 150, y + 40), (x + 230, y + 150))  # Dog
    drag(task, (x + 5, y + 5), (x + 15, y + 15))  # one too many
    task.get_by_role("button", name="Remove Dog box at 5,5, 10×10").click()
    task.mouse.click(x + 60, y + 60)  # select the Cat box
    task.keyboard.press("ArrowRight")
    task.keyboard.press("ArrowRight")
    task.keyboard.press("Alt+ArrowDown")  # one pixel taller
    snap(task, "crowd-bounding-box")
    task.keyboard.press("Enter")
    assert site.answers(task) == [{"annotatedResult": {
        "boundingBoxes": [{"label": "Cat", "left": 22, "top": 30, "width": 100, "height": 61},
                          {"label": "Dog", "left": 150, "top": 40, "width": 80, "height": 110}],
        "inputImageProperties": {"height": HEIGHT, "width": WIDTH}}}]


def test_keypoints_and_a_polygon_in_one_form(task, site: TaskSite) -> None:
    site.open(task, "keypoints-polygon", {"taskObject": "s3://faces/face.png"})
    task.wait_for_function("[...document.querySelectorAll('.crowd-stage img')]"
                           ".every(i => i.naturalWidth > 0)")
    x, y = stage_origin(task, 0)
    task.mouse.click(x + 60, y + 50)  # Left eye
    task.keyboard.press("2")  # keys go to the widget in focus: Right eye
    task.mouse.click(x + 180, y + 50)
    task.keyboard.press("Enter")  # the polygon is required
    assert "Outline the face: draw at least one annotation" in task.inner_text(".crowd-form-errors")
    x, y = stage_origin(task, 1)
    for corner in [(40, 20), (200, 20), (200, 140), (40, 140)]:
        task.mouse.click(x + corner[0], y + corner[1])
    task.keyboard.press("Enter")  # closes the polygon
    task.keyboard.press("Enter")  # submits
    size = {"height": HEIGHT, "width": WIDTH}
    assert site.answers(task) == [{
        "eyes": {"keypoints": [{"label": "Left eye", "x": 60, "y": 50},
                               {"label": "Right eye", "x": 180, "y": 50}],
                 "inputImageProperties": size},
        "outline": {"polygons": [{"label": "Face", "vertices": [
            {"x": 40, "y": 20}, {"x": 200, "y": 20}, {"x": 200, "y": 140}, {"x": 40, "y": 140}]}],
            "inputImageProperties": size}}]


# ---------------------------------------------------------------------- forms
def test_survey_of_inputs_checkboxes_slider_and_radios(task, site: TaskSite) -> None:
    site.open(task, "survey", {"company": "Acme <script>alert(1)</script>"})
    assert task.inner_text("#company") == "Acme <script>alert(1)</script>"
    task.get_by_role("button", name="Submit").click()
    errors = task.locator(".crowd-form-errors").inner_text()
    assert "2 answers are missing" in errors and "Website" in errors and "Notes" in errors
    task.get_by_label("Notes").fill("Fine")  # the list follows the answers
    errors = task.locator(".crowd-form-errors").inner_text()
    assert "One answer is missing" in errors and "Website" in errors and "Notes" not in errors
    task.get_by_label("Website", exact=True).fill("https://acme.example")
    task.get_by_label("The website was easy to find").click()  # checked="true": now off
    task.get_by_label("Blurry").check()
    slider = task.get_by_role("slider")
    slider.focus()
    for _ in range(3):
        task.keyboard.press("ArrowRight")
    assert task.inner_text(".crowd-slider-value") == "8"
    task.get_by_role("radio", name="Retail").check()
    task.get_by_label("Notes").fill("Line one\nLine two")
    assert task.inner_text(".crowd-counter") == "17/200"
    snap(task, "crowd-survey")
    task.get_by_role("button", name="Submit").click()
    assert site.answers(task) == [{
        "website": "https://acme.example",
        "found": {"on": False},
        "logo_problems": {"blurry": True, "dim": False},
        "trust": 8,
        "tech": {"tech": False},
        "retail": {"retail": True},
        "notes": "Line one\nLine two",
    }]


def test_instructions_alerts_and_native_inputs(task, site: TaskSite) -> None:
    site.open(task, "instructions-alert", {"taskObject": "s3://photos/road.png"})
    task.get_by_role("button", name="Read the instructions").click()
    instructions = task.get_by_role("dialog", name="Instructions")
    assert "Name the main subject" in instructions.inner_text()
    task.get_by_role("tab", name="Summary").focus()
    task.keyboard.press("ArrowRight")
    task.keyboard.press("ArrowRight")
    assert task.get_by_role("tab", name="Examples").get_attribute("aria-selected") == "true"
    assert "Good examples" in instructions.inner_text()
    assert "“Outside”, “daytime”" in instructions.inner_text()
    task.keyboard.press("Escape")
    assert not instructions.is_visible()
    warning = task.get_by_role("alert").filter(has_text="rotated")
    warning.get_by_role("button", name="Dismiss").click()
    assert not warning.is_visible()
    task.get_by_role("button", name="View full instructions").click()
    rules = task.get_by_role("dialog", name="All the rules")
    assert "Use nouns" in rules.inner_text()
    rules.get_by_role("button", name="Close").click()
    task.get_by_text("Which animal, if any?").click()  # focus back on the page
    task.keyboard.press("Enter")  # nothing answered yet
    assert "Main subject: this field is required" in task.inner_text(".crowd-form-errors")
    assert task.get_by_label("Main subject").evaluate("e => e === document.activeElement")
    task.get_by_label("Cat").check()
    task.get_by_label("Main subject").fill("Highway")
    task.keyboard.press("Enter")
    assert site.answers(task) == [{"subject": "Highway", "animal-type": "cat"}]


def test_the_page_can_take_the_answer_over(task, site: TaskSite) -> None:
    task.add_init_script("""
        window.seen = {ready: false, answers: []};
        document.addEventListener('all-crowd-elements-ready', () => { window.seen.ready = true; });
        document.addEventListener('crowd-submit', (event) => {
            event.preventDefault();
            window.seen.answers.push(event.detail.answer);
        });
    """)
    site.open(task, "text-classification", {"labels": ["Billing", "Other"], "source": "Refund?"})
    task.wait_for_function("window.seen.ready")
    posts = len(site.posts)
    task.keyboard.press("1")
    task.keyboard.press("Enter")
    assert task.evaluate("window.seen.answers") == [{"category": {"label": "Billing"}}]
    # A template's onsubmit handler may refuse too (crowd-form "inherits its events").
    task.evaluate("() => { document.querySelector('crowd-form').onsubmit = "
                  "(e) => e.preventDefault(); }")
    task.keyboard.press("Enter")
    assert task.evaluate("window.seen.answers.length") == 1
    assert len(site.posts) == posts
