"""Hook functions in the shape of Ground Truth's Lambda functions, for the labeling-job
tests (importable by the test process and, through PYTHONPATH, by the server's)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any


def pre(event: dict[str, Any]) -> dict[str, Any]:
    """A pre-annotation function: the review's text and its shop become the task input;
    lines marked ``skip`` need no person; lines marked ``explode`` fail; ``slow`` ones take
    longer than the hook's timeout."""
    line = event["dataObject"]
    if line.get("explode"):
        raise ValueError(f"cannot prepare {line['source'][:20]!r}")
    if line.get("slow"):
        time.sleep(5)
    return {"taskInput": {"review": line["source"], "shop": line.get("shop", "?"),
                          "job": event["labelingJobArn"].rsplit("/", 1)[-1]},
            "isHumanAnnotationRequired": "false" if line.get("skip") else "true"}


def post(event: dict[str, Any]) -> list[dict[str, Any]]:
    """A consolidation function: the sentiment most workers chose, with their count."""
    attribute = event["labelAttributeName"]
    out = []
    for item in event["payload"]["content"]:
        chosen = [json.loads(a["annotationData"]["content"])["sentiment"]["label"]
                  for a in item["annotations"]]
        label, votes = Counter(chosen).most_common(1)[0]
        out.append({"datasetObjectId": item["datasetObjectId"], "consolidatedAnnotation": {
            "content": {attribute: {"sentiment": label, "votes": votes,
                                    "workers": len(chosen)}}}})
    return out
