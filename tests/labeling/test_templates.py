"""Task templates rendered as Ground Truth renders them: task input always escaped, GT's
filters (escape, escape_once, skip_autoescape, to_json, grant_read_access), the crowd-html
elements script pointed at our own copy, and errors that name a line and column."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from loopworks.errors import ValidationError
from loopworks.labeling.templates import MAX_TEMPLATE_CHARS, check_template, render_template

OURS = "/static/crowd/crowd-html-elements.js"
HOSTILE = "<img src=x onerror=alert(1)> \"quoted\" 'single' & more"
SAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "crowd_templates")
                 .glob("*.liquid.html"))


def render(text: str, task_input: dict | None = None, **kwargs) -> str:
    return render_template(text, task_input or {}, elements_url=OURS, **kwargs)


# ---------------------------------------------------------------------- escaping
def test_task_input_never_becomes_markup() -> None:
    out = render('<p>{{ task.input.x }}</p><div title="{{ task.input.x }}" '
                 "data-y='{{ task.input.x }}'></div>", {"x": HOSTILE})
    assert "<img" not in out and "onerror=alert(1)>" not in out
    assert out == ("<p>&lt;img src=x onerror=alert(1)&gt; &#34;quoted&#34; &#39;single&#39; "
                   "&amp; more</p><div title=\"&lt;img src=x onerror=alert(1)&gt; &#34;quoted"
                   "&#34; &#39;single&#39; &amp; more\" data-y='&lt;img src=x onerror=alert(1)"
                   "&gt; &#34;quoted&#34; &#39;single&#39; &amp; more'></div>")


def test_nested_input_and_loops_are_escaped_too() -> None:
    out = render("{% for item in task.input.items %}<li>{{ item.name | upcase }}</li>{% endfor %}",
                 {"items": [{"name": "<b>a</b>"}, {"name": "c&d"}]})
    assert out == "<li>&lt;B&gt;A&lt;/B&gt;</li><li>C&amp;D</li>"


def test_gt_filter_examples() -> None:
    """The output of GT's "Example of the filters" (Variable filters), the values coming from
    the task input (a string literal in a template is the author's own markup, as HTML
    typed into it is: python-liquid does not escape it)."""
    out = render(
        "auto-escape: {{ task.input.book }}\n"
        "explicit escape: {{ task.input.book | escape }}\n"
        "explicit escape_once: {{ task.input.escaped | escape_once }}\n"
        "skip_autoescape: {{ task.input.book | skip_autoescape }}\n"
        "to_json: {{ task.input.jsObject | to_json }}\n"
        "grant_read_access: {{ task.input.photo | grant_read_access }}",
        {"book": "Have you read 'James & the Giant Peach'?",
         "escaped": "Have you read 'James &amp; the Giant Peach'?",
         "jsObject": {"point_number": 8, "coords": [59, 76]},
         "photo": "s3://mybucket/myphoto.png"},
        grant_read_access=lambda uri: f"https://s3.amazonaws.com/{uri[5:]}?token=t")
    lines = out.splitlines()
    escaped = "Have you read &#39;James &amp; the Giant Peach&#39;?"
    assert lines[:4] == [f"auto-escape: {escaped}", f"explicit escape: {escaped}",
                         f"explicit escape_once: {escaped}",
                         "skip_autoescape: Have you read 'James & the Giant Peach'?"]
    assert json.loads(html.unescape(lines[4].removeprefix("to_json: "))) == {
        "point_number": 8, "coords": [59, 76]}
    assert lines[5] == "grant_read_access: https://s3.amazonaws.com/mybucket/myphoto.png?token=t"


def test_escape_is_not_repeated_by_autoescape() -> None:
    assert render("{{ task.input.x | escape_once }}", {"x": "&lt;b&gt; &amp; <i>"}) == (
        "&lt;b&gt; &amp; &lt;i&gt;")
    assert render("{{ task.input.x | escape }}", {"x": "<&>"}) == "&lt;&amp;&gt;"


def test_skip_autoescape_lets_trusted_html_through() -> None:
    out = render("{{ task.input.rules | skip_autoescape }}|{{ task.input.gone | skip_autoescape }}",
                 {"rules": "<p>Draw <b>tight</b> boxes</p>"})
    assert out == "<p>Draw <b>tight</b> boxes</p>|"


# ---------------------------------------------------------------------- to_json
def test_to_json_in_an_attribute_reads_back_as_the_input() -> None:
    labels = ["it's", 'say "hi"', "<b>&</b>", "ünïcode"]
    out = render("<crowd-classifier categories='{{ task.input.labels | to_json }}'>"
                 '<x c="{{ task.input.labels | to_json | escape }}">', {"labels": labels})
    single, double = re.findall(r"""categories='([^']*)'|c="([^"]*)\"""", out)
    assert json.loads(html.unescape(single[0])) == labels  # as the browser reads it
    assert json.loads(html.unescape(double[1])) == labels  # escaped once, not twice


def test_to_json_cannot_close_a_script() -> None:
    out = render("<script>const data = {{ task.input | to_json | skip_autoescape }};</script>",
                 {"text": "</script><script>alert(1)</script>", "n": 1.5, "ok": True,
                  "none": None})
    assert out.count("</script>") == 1
    assert json.loads(out.removeprefix("<script>const data = ").removesuffix(";</script>")) == {
        "text": "</script><script>alert(1)</script>", "n": 1.5, "ok": True, "none": None}


def test_to_json_of_something_undefined_is_null() -> None:
    assert render("{{ task.input.missing | to_json }}") == "null"
    assert render("{{ 'a' | to_json }}|{{ 3 | to_json }}") == "&#34;a&#34;|3"


# ---------------------------------------------------------------------- grant_read_access
def test_grant_read_access_signs_s3_uris_only() -> None:
    asked: list[str] = []

    def grant(uri: str) -> str:
        asked.append(uri)
        return f"https://files.example/{uri[5:]}?sig=a&exp=1"

    out = render('<img src="{{ task.input.a | grant_read_access }}">'
                 '<img src="{{ task.input.b | grant_read_access }}">',
                 {"a": "s3://bucket/cat one.png", "b": "https://cdn.example/dog.png"},
                 grant_read_access=grant)
    assert asked == ["s3://bucket/cat one.png"]
    assert out == ('<img src="https://files.example/bucket/cat one.png?sig=a&amp;exp=1">'
                   '<img src="https://cdn.example/dog.png">')


def test_grant_read_access_without_a_function_leaves_the_uri() -> None:
    assert render("{{ 's3://bucket/k.png' | grant_read_access }}") == "s3://bucket/k.png"
    assert render("[{{ task.input.nope | grant_read_access }}]") == "[]"


def test_the_grant_function_belongs_to_one_render() -> None:
    render("{{ 's3://b/k' | grant_read_access }}", grant_read_access=lambda uri: "signed")
    assert render("{{ 's3://b/k' | grant_read_access }}") == "s3://b/k"


# ---------------------------------------------------------------------- script and variables
@pytest.mark.parametrize("tag, expected", [
    ('<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>',
     f'<script src="{OURS}"></script>'),
    ("<script src='https://assets.crowd.aws/crowd-html-elements.js'></script>",
     f'<script src="{OURS}"></script>'),
    ("<script src=https://assets.crowd.aws/crowd-html-elements.js></script>",
     f'<script src="{OURS}"></script>'),
    ('<SCRIPT nonce="n1" type="text/javascript" SRC="//assets.crowd.aws/crowd-html-elements.js'
     '?v=2" integrity="sha384-abc" crossorigin="anonymous" defer></SCRIPT>',
     f'<script nonce="n1" type="text/javascript" src="{OURS}" defer></SCRIPT>'),
    ('<script\n  src = "http://assets.crowd.aws/crowd-html-elements.js" async></script>',
     f'<script src="{OURS}" async></script>'),
    ('<script src="https://example.com/crowd-html-elements.js"></script>',
     '<script src="https://example.com/crowd-html-elements.js"></script>'),
    ('<script data-src="https://assets.crowd.aws/crowd-html-elements.js"></script>',
     '<script data-src="https://assets.crowd.aws/crowd-html-elements.js"></script>'),
])
def test_the_elements_script_loads_from_us(tag: str, expected: str) -> None:
    assert render(tag) == expected


def test_the_elements_url_is_escaped() -> None:
    out = render_template('<script src="https://assets.crowd.aws/crowd-html-elements.js">',
                          {}, elements_url='/e.js?v=1&x="')
    assert out == '<script src="/e.js?v=1&amp;x=&quot;">'


def test_undefined_variables_render_empty() -> None:
    out = render("[{{ task.input.missing }}][{{ task.input.a.b.c }}][{{ nothing }}]"
                 "{% if task.input.missing %}yes{% else %}no{% endif %}", {"a": 1})
    assert out == "[][][]no"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_the_sample_templates_render(sample: Path) -> None:
    text = sample.read_text()
    check_template(text, name=sample.name)
    out = render(text, {"labels": ["a"], "taskObject": "s3://b/k.png", "text": "t"},
                 grant_read_access=lambda uri: "/images/k.png")
    assert "assets.crowd.aws" not in out and f'src="{OURS}"' in out


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("text, line, column, says", [
    ("<crowd-form>\n  {% if %}\n</crowd-form>", 2, 6, "missing expression"),
    ("<p>\n  {% endif %}", 2, 6, "unexpected tag 'endif'"),
    ("{% frobnicate %}", 1, 4, "unexpected tag 'frobnicate'"),
])
def test_parse_errors_name_line_and_column(text: str, line: int, column: int, says: str) -> None:
    with pytest.raises(ValidationError) as rendering:
        render(text)
    with pytest.raises(ValidationError) as checking:
        check_template(text)
    assert str(rendering.value) == str(checking.value)
    error = rendering.value
    assert (error.line, error.column, error.field) == (line, column, "template")
    assert str(error).startswith(f"template: line {line}, column {column}: ")
    assert says in str(error)


@pytest.mark.parametrize("text, says", [
    ("a\n{% for x in task.input.xs %}\nno end", "expected tag endfor"),
    ("<ul>\n{% for x in %}", "expected a primitive expression"),
])
def test_parse_errors_without_a_position_still_say_what(text: str, says: str) -> None:
    """Liquid knows no position for a template that ends too soon: the message says why."""
    with pytest.raises(ValidationError, match=f"^template: {says}") as error:
        render(text)
    assert "line" not in error.value.fields


def test_render_errors_name_line_and_column() -> None:
    with pytest.raises(ValidationError) as unknown:
        render("ok\n<p>{{ task.input.x | frobnicate }}</p>", name="UiTemplate.Content")
    assert (unknown.value.line, unknown.value.column) == (2, 22)  # the filter's name
    assert str(unknown.value).startswith("UiTemplate.Content: line 2, column 22: unknown filter")
    with pytest.raises(ValidationError, match="loop iteration limit"):
        render("{% for i in (1..1000) %}{% for j in (1..1000) %}{% endfor %}{% endfor %}")


def test_empty_and_oversized_templates_are_refused() -> None:
    with pytest.raises(ValidationError, match="template is empty"):
        render("  \n ")
    with pytest.raises(ValidationError, match="at most 128,000"):
        render("x" * (MAX_TEMPLATE_CHARS + 1))


# ------------------------------------------------------------------ built-in templates
@pytest.mark.parametrize("task_type,element", [
    ("text-classification", "crowd-classifier"),
    ("text-classification-multilabel", "crowd-classifier-multi-select"),
    ("named-entity-recognition", "crowd-entity-annotation"),
    ("image-classification", "crowd-image-classifier"),
    ("bounding-box", "crowd-bounding-box"),
])
def test_every_built_in_task_type_is_a_template(task_type: str, element: str) -> None:
    """One rendering path: a job without a template shows its type's built-in one, with
    the labels and the item escaped into it."""
    from loopworks.labeling.templates import template_for

    text = template_for(task_type)
    assert template_for(task_type, "<p>mine</p>") == "<p>mine</p>"
    out = render(text, {"taskObject": 'Fits "well" <b>x</b>', "labels": ["good", "b&d"],
                        "imageUrl": "/jobs/j/tasks/1/image"})
    assert f"<{element} " in out and f"</{element}>" in out
    assert "<b>x</b>" not in out  # the item stays text
    assert r"[&#34;good&#34;, &#34;b\u0026d&#34;]" in out  # the labels, JSON in an attribute
    if "image" in element or "bounding" in element:
        assert 'src="/jobs/j/tasks/1/image"' in out
