"""Hook functions for tests/labeling/test_hooks.py, imported by name (``hookfns:echo``).

Those that keep state between attempts count them in a file the event names
(``event["counter"]``), so that each test has its own count.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

not_a_function = 42


def pre_annotate(event: dict[str, Any]) -> dict[str, Any]:
    """A pre-annotation Lambda's answer: the manifest line's source as the task input."""
    return {"taskInput": {"text": event["dataObject"]["source"]},
            "isHumanAnnotationRequired": "true"}


def echo(event: dict[str, Any]) -> dict[str, Any]:
    """The event back, and proof that it was a copy one may change."""
    event["seen"] = True
    return event


def _count(event: dict[str, Any]) -> int:
    counter = Path(event["counter"])
    attempts = int(counter.read_text() or 0) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    return attempts


def sleepy(event: dict[str, Any]) -> str:
    """Counts the attempt, then sleeps ``event["sleep"]`` seconds."""
    _count(event)
    time.sleep(event["sleep"])
    return "woke"


def flaky(event: dict[str, Any]) -> dict[str, int]:
    """Fails the first ``event["failures"]`` attempts with a ValueError."""
    attempts = _count(event)
    if attempts <= event["failures"]:
        raise ValueError(f"attempt {attempts} fails")
    return {"attempts": attempts}


def not_json(event: dict[str, Any]) -> object:
    """A value JSON cannot hold."""
    return {"when": object()}
