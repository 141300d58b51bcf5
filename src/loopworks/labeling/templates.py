"""Task templates in Liquid, as Ground Truth and Augmented AI take them.

A human task UI or a labeling job's template is Liquid (python-liquid) over ``task.input``,
with crowd-html elements for the form. Here a template is checked when it is given, so a
mistake is refused then, naming its line and column, rather than when a person opens a task.
Rendering with GT's filters comes with the pages that show them.
"""

from __future__ import annotations

from loopworks.errors import ValidationError

__all__ = ["MAX_TEMPLATE_CHARS", "check_template"]

#: The longest template SageMaker takes (UiTemplate.Content).
MAX_TEMPLATE_CHARS = 128_000


def check_template(text: str, *, name: str = "template") -> None:
    """Parse a Liquid template.

    Raises:
        ValidationError: It is empty, too long, or does not parse (line and column given).
    """
    from liquid import Environment
    from liquid.exceptions import LiquidError

    if not text.strip():
        raise ValidationError(f"{name} is empty", field=name)
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ValidationError(f"{name} has {len(text):,} characters; at most "
                              f"{MAX_TEMPLATE_CHARS:,}", field=name)
    try:
        Environment(autoescape=True).from_string(text)
    except LiquidError as exc:
        token = getattr(exc, "token", None)
        at = getattr(token, "start_index", None)
        if isinstance(at, int):
            line = text.count("\n", 0, at) + 1
            column = at - (text.rfind("\n", 0, at) + 1) + 1
            raise ValidationError(f"{name}: line {line}, column {column}: {exc.message}",
                                  field=name, line=line, column=column) from None
        raise ValidationError(f"{name}: {exc}", field=name) from None
