"""What the JSON API takes as a request body: JSON whose text is Unicode.

JSON may escape one half of a UTF-16 surrogate pair on its own (``"\\ud800"``). Python's
parser turns it into a ``str`` that no database, file name or response can encode, so it
used to fail deep inside whichever handler stored or echoed it: a 500, and a flow created
with such a label broke every later listing of flows and jobs. The API's routers refuse
such a body up front with a 422 instead (:func:`require_unicode_body`).
"""

from __future__ import annotations

import json
import re

from fastapi import Request

from loopworks.errors import ValidationError

__all__ = ["require_unicode_body"]

#: A ``\uD800``-``\uDFFF`` escape: only a body holding one needs the full check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def require_unicode_body(request: Request) -> None:
    """Refuse (422) a JSON body with a lone surrogate escape in any string or key. A valid
    pair (``"\\ud83d\\ude00"``, one emoji) is one character and passes.

    Raises:
        ValidationError: The body holds text that is not Unicode.
    """
    if request.method in ("GET", "HEAD"):
        return
    body = await request.body()  # read once: FastAPI keeps it for the handler
    if not _SURROGATE_ESCAPE.search(body):
        return
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: FastAPI answers that itself
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("the body holds text that is not Unicode: a lone UTF-16 "
                              "surrogate escape such as \\ud800 (a pair stands for one "
                              "character; half of one stands for nothing)",
                              field="body") from None
