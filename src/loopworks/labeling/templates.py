"""Task templates in Liquid, as Ground Truth and Augmented AI take them.

A human task UI or a labeling job's template is Liquid (python-liquid) over ``task.input``,
with crowd-html elements for the form. Here a template is checked when it is given, so a
mistake is refused then, naming its line and column, rather than when a person opens a task;
and it is rendered for a task with GT's filters, its crowd-html elements script pointed at our
own implementation (``server/static/crowd/crowd-html-elements.js``) so a task page loads
nothing from outside.

Rendering follows GT's "Variable filters" (SageMaker developer guide, "Adding automation with
Liquid"): output is HTML-escaped unless ``skip_autoescape`` says otherwise; ``escape`` and
``escape_once`` say so explicitly; ``to_json`` serializes; ``grant_read_access`` turns an S3
URI into a URL a worker's browser may read.
"""

from __future__ import annotations

import contextvars
import functools
import html
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loopworks.errors import ValidationError
from loopworks.labeling.tasktypes import TaskType

if TYPE_CHECKING:
    from liquid import BoundTemplate, Environment
    from liquid.exceptions import LiquidError

__all__ = ["BUILT_IN_TEMPLATES", "MAX_TEMPLATE_CHARS", "check_template", "render_template",
           "template_for"]

#: The longest template SageMaker takes (UiTemplate.Content).
MAX_TEMPLATE_CHARS = 128_000

#: The opening tag of a script that loads GT's elements
#: (https://assets.crowd.aws/crowd-html-elements.js): any attribute order, quoting, scheme
#: (or none) and query string.
_CROWD_SCRIPT = re.compile(
    r"""<script(?P<before>\b[^>]*?)\s+src\s*=\s*(?P<q>["']?)\s*(?:https?:)?//assets\.crowd\.aws/"""
    r"""crowd-html-elements\.js(?:[?#][^"'\s>]*)?\s*(?P=q)(?P<after>[^>]*)>""",
    re.IGNORECASE)
#: Attributes that pin Amazon's copy of the script (subresource integrity); ours differs.
_PINNING = re.compile(r"""\s+(?:integrity|crossorigin)\b(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*))?""",
                      re.IGNORECASE)

#: The grant function of the render under way (filters are registered once, for all renders).
_GRANT: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar(
    "loopworks_grant_read_access", default=None)


#: The page of each built-in task type, as a template like any other (one rendering path):
#: ``task.input`` holds ``taskObject`` (the text), ``labels`` and, for images, ``imageUrl``.
BUILT_IN_TEMPLATES: dict[TaskType, str] = {
    TaskType.TEXT_CLASSIFICATION: """<crowd-form>
  <crowd-classifier name="label" categories="{{ task.input.labels | to_json }}"
                    header="Which label fits?">
    <classification-target>{{ task.input.taskObject }}</classification-target>
  </crowd-classifier>
</crowd-form>""",
    TaskType.TEXT_CLASSIFICATION_MULTILABEL: """<crowd-form>
  <crowd-classifier-multi-select name="labels" categories="{{ task.input.labels | to_json }}"
                                 header="Which labels fit? (any number)">
    <classification-target>{{ task.input.taskObject }}</classification-target>
  </crowd-classifier-multi-select>
</crowd-form>""",
    TaskType.NAMED_ENTITY_RECOGNITION: """<crowd-form>
  <crowd-entity-annotation name="entities" labels="{{ task.input.labels | to_json }}"
                           text="{{ task.input.taskObject }}"
                           header="Select each entity, then press its label's number">
  </crowd-entity-annotation>
</crowd-form>""",
    TaskType.IMAGE_CLASSIFICATION: """<crowd-form>
  <crowd-image-classifier name="label" src="{{ task.input.imageUrl }}"
                          categories="{{ task.input.labels | to_json }}"
                          header="Which label fits the image?">
  </crowd-image-classifier>
</crowd-form>""",
    TaskType.BOUNDING_BOX: """<crowd-form>
  <crowd-bounding-box name="boxes" src="{{ task.input.imageUrl }}"
                      labels="{{ task.input.labels | to_json }}"
                      header="Pick a label (1-9), then draw a box around each such object">
  </crowd-bounding-box>
</crowd-form>""",
}


def template_for(task_type: TaskType | str, template: str = "") -> str:
    """The template a task page renders: the job's own, else its task type's built-in one."""
    if template:
        return template
    return BUILT_IN_TEMPLATES[TaskType(task_type)]


def check_template(text: str, *, name: str = "template") -> None:
    """Parse a Liquid template.

    Args:
        text: The template's source.
        name: What to call it in an error (the request field that held it).

    Raises:
        ValidationError: It is empty, too long, or does not parse (line and column given).
    """
    _parse(text, name)


def render_template(text: str, task_input: dict[str, Any], *, elements_url: str,
                    grant_read_access: Callable[[str], str] | None = None,
                    name: str = "template") -> str:
    """Render a task template for one task, as Ground Truth renders it for a worker.

    The template sees ``task.input`` (the task's input JSON). Output is HTML-escaped unless
    a template says ``skip_autoescape``, so task input never becomes markup by accident
    (a string literal in the template is the author's own markup and stays as written);
    undefined variables render empty. Scripts loading GT's crowd-html elements load
    ``elements_url`` instead.

    Args:
        text: The template's source (Liquid with crowd-html elements).
        task_input: The task's input; untrusted.
        elements_url: Where the page loads our crowd-html elements from.
        grant_read_access: Turns an ``s3://`` URI into a URL a worker's browser may read;
            without it the filter leaves its input as it is.
        name: What to call the template in an error.

    Returns:
        The page's HTML.

    Raises:
        ValidationError: The template does not parse, or fails while rendering (a loop or
            output limit, a filter given the wrong arguments), with line and column when
            known.
    """
    from liquid.exceptions import LiquidError

    template = _parse(text, name)
    token = _GRANT.set(grant_read_access)
    try:
        rendered = template.render(task={"input": task_input})
    except LiquidError as exc:
        raise _invalid(exc, text, name) from None
    finally:
        _GRANT.reset(token)
    src = f' src="{html.escape(elements_url, quote=True)}"'

    def ours(match: re.Match[str]) -> str:
        before, after = (_PINNING.sub("", match[part]) for part in ("before", "after"))
        return f"<script{before}{src}{after}>"

    return _CROWD_SCRIPT.sub(ours, rendered)


def _parse(text: str, name: str) -> BoundTemplate:
    """The parsed template, or a ValidationError saying where and why it is refused."""
    from liquid.exceptions import LiquidError

    if not text.strip():
        raise ValidationError(f"{name} is empty", field=name)
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ValidationError(f"{name} has {len(text):,} characters; at most "
                              f"{MAX_TEMPLATE_CHARS:,}", field=name)
    try:
        return _environment().from_string(text)
    except LiquidError as exc:
        raise _invalid(exc, text, name) from None


def _invalid(exc: LiquidError, text: str, name: str) -> ValidationError:
    """A Liquid error as our ValidationError, with the line and column it names."""
    token = getattr(exc, "token", None)
    at = getattr(token, "start_index", None)
    if isinstance(at, int) and 0 <= at <= len(text):
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        return ValidationError(f"{name}: line {line}, column {column}: {exc.message}",
                               field=name, line=line, column=column)
    return ValidationError(f"{name}: {exc.message or exc}", field=name)


@functools.cache
def _environment() -> Environment:
    """One Liquid environment for every task template: autoescape on, GT's filters added,
    and limits so one template cannot loop or write without end."""
    from liquid import Environment

    class TaskTemplates(Environment):
        loop_iteration_limit = 100_000
        output_stream_limit = 16 * 1024 * 1024
        local_namespace_limit = 1024 * 1024

    env = TaskTemplates(autoescape=True)
    env.add_filter("skip_autoescape", _skip_autoescape)
    env.add_filter("to_json", _to_json)
    env.add_filter("grant_read_access", _grant_read_access)
    return env


def _skip_autoescape(value: object) -> str:
    """GT's ``skip_autoescape``: the value goes out as HTML, unescaped."""
    from liquid import Markup, is_undefined

    return Markup("" if value is None or is_undefined(value) else str(value))


def _to_json(value: object) -> str:
    """GT's ``to_json``: the value as JSON (undefined as ``null``).

    ``<``, ``>`` and ``&`` are written as ``\\u`` escapes, which JSON readers decode the same,
    so even ``to_json | skip_autoescape`` inside a ``<script>`` cannot close it. The result
    is still HTML-escaped on output, which is what an attribute needs.
    """
    from liquid import is_undefined

    if is_undefined(value):
        value = None
    text = json.dumps(value, ensure_ascii=False, default=_jsonable)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _jsonable(value: object) -> object:
    """JSON for what json does not know: Liquid's undefined as null, the rest as text."""
    from liquid import is_undefined

    return None if is_undefined(value) else str(value)


def _grant_read_access(value: object) -> str:
    """GT's ``grant_read_access``: an ``s3://`` URI as a URL the worker's browser may read
    (through the render's grant function); anything else, or no function, unchanged."""
    from liquid import is_undefined

    text = "" if value is None or is_undefined(value) else str(value)
    grant = _GRANT.get()
    if grant is None or not text[:5].lower() == "s3://":
        return text
    return grant(text)
