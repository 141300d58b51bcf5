"""Task types: what people are asked to do with an item, what a valid answer looks like,
and how several workers' structured answers (spans, boxes) become one.

Answers, as a worker (or the JSON API) sends them:

* ``text-classification`` / ``image-classification``: one label, ``"positive"``;
* ``text-classification-multilabel``: a list of labels, ``["fit", "price"]``;
* ``named-entity-recognition``: ``{"entities": [{"start": 0, "end": 5, "label": "PER"}]}``,
  character offsets into the item's text, end exclusive, no two spans overlapping;
* ``bounding-box``: ``{"boundingBoxes": [{"label": "dog", "left": 10, "top": 20,
  "width": 50, "height": 40}]}`` in image pixels; an empty list means nothing to mark.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from loopworks.errors import ConfigurationError

__all__ = ["IMAGE_SUFFIXES", "TaskType", "consolidate_boxes", "consolidate_spans",
           "from_crowd_form", "majority_share", "validate_answer"]

#: Image files an image task accepts (checked when the job is created).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


class TaskType(StrEnum):
    """What people are asked to do with each item."""

    TEXT_CLASSIFICATION = "text-classification"
    TEXT_CLASSIFICATION_MULTILABEL = "text-classification-multilabel"
    NAMED_ENTITY_RECOGNITION = "named-entity-recognition"
    IMAGE_CLASSIFICATION = "image-classification"
    BOUNDING_BOX = "bounding-box"
    #: A job with its own Liquid task template (crowd-html elements), as Ground Truth's
    #: custom labeling workflows: the answer is the form's JSON as the elements record it.
    CUSTOM = "custom"

    @property
    def is_image(self) -> bool:
        """Items are image files (``source`` is the image's absolute path)."""
        return self in (TaskType.IMAGE_CLASSIFICATION, TaskType.BOUNDING_BOX)

    @property
    def single_label(self) -> bool:
        """An answer is exactly one label."""
        return self in (TaskType.TEXT_CLASSIFICATION, TaskType.IMAGE_CLASSIFICATION)

    @property
    def output_type(self) -> str:
        """The ``type`` Ground Truth writes in the output metadata."""
        if self is TaskType.BOUNDING_BOX:
            return "groundtruth/object-detection"
        return f"groundtruth/{self.value}"


def _bad(message: str, setting: str, labels: Sequence[str] | None = None) -> ConfigurationError:
    if labels is None:
        return ConfigurationError(message, setting=setting)
    return ConfigurationError(message, setting=setting, valid_values=list(labels))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def validate_answer(task_type: TaskType, labels: Sequence[str], answer: Any,
                    source: str | None = None) -> Any:
    """Check a worker's answer against the task type and label set.

    Args:
        task_type: The job's task type.
        labels: The job's label set.
        answer: What the worker sent (see the module docstring for each type's shape).
        source: The item's text (needed for named-entity spans' offsets).

    Returns:
        The answer as stored: a label, a list of labels, or the normalised dict (spans
        sorted by start).

    Raises:
        ConfigurationError: The answer does not fit; ``setting`` names the offending field
            (``answer``, ``answer.entities[1].end``, ...).
    """
    if task_type is TaskType.CUSTOM:
        return _validate_form(answer)
    if task_type.single_label or task_type is TaskType.TEXT_CLASSIFICATION_MULTILABEL:
        if isinstance(answer, str):
            chosen = [answer]
        elif isinstance(answer, list) and all(isinstance(a, str) for a in answer):
            chosen = list(answer)
        else:
            raise _bad(f"a {task_type.value} answer is a label name (or a list of them), "
                       f"got {type(answer).__name__}", "answer", labels)
        unknown = [a for a in chosen if a not in labels]
        if unknown or (task_type.single_label and len(chosen) != 1):
            raise _bad(f"answer {answer!r} is not one of the job's labels {list(labels)}",
                       "answer", labels)
        if len(set(chosen)) != len(chosen):
            raise _bad(f"answer {answer!r} names a label twice", "answer", labels)
        return chosen[0] if task_type.single_label else chosen
    if task_type is TaskType.NAMED_ENTITY_RECOGNITION:
        return _validate_spans(labels, answer, source or "")
    return _validate_boxes(labels, answer)


def from_crowd_form(task_type: TaskType, form: dict[str, Any]) -> Any:
    """A built-in task type's answer read from a crowd form's JSON, when the job's page is
    a Liquid template (Ground Truth's built-in templates are such pages).

    The form maps element names to what each element recorded; the one element of the task
    type's kind gives the answer: ``{"label"}`` (crowd-classifier, crowd-image-classifier)
    for single-label types, ``{"labels"}`` (crowd-classifier-multi-select) for multi-label,
    ``{"entities": [{"startOffset", "endOffset", "label"}]}`` (crowd-entity-annotation)
    for named entities, ``{"boundingBoxes": [...]}`` (crowd-bounding-box) for boxes. The
    result still goes through :func:`validate_answer`.

    Raises:
        ConfigurationError: No element, or more than one, gives this task type's answer.
    """
    if task_type is TaskType.CUSTOM:
        return form
    key = {TaskType.TEXT_CLASSIFICATION_MULTILABEL: "labels",
           TaskType.NAMED_ENTITY_RECOGNITION: "entities",
           TaskType.BOUNDING_BOX: "boundingBoxes"}.get(task_type, "label")
    found = [(name, value) for name, value in form.items()
             if isinstance(value, dict) and key in value]
    if len(found) != 1:
        what = "no element" if not found else \
            f"{len(found)} elements ({', '.join(name for name, _ in found)})"
        raise _bad(f"the task form sent {what} with a {key!r} answer; a {task_type.value} "
                   f"template needs exactly one", "answer")
    name, value = found[0]
    if task_type is TaskType.NAMED_ENTITY_RECOGNITION:
        entities = value["entities"]
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            raise _bad(f"answer.{name}.entities must be a list of objects",
                       f"answer.{name}.entities")
        return {"entities": [{"start": e.get("startOffset"), "end": e.get("endOffset"),
                              "label": e.get("label")} for e in entities]}
    if task_type is TaskType.BOUNDING_BOX:
        return {"boundingBoxes": value["boundingBoxes"]}
    return value[key]


#: The largest answer a custom template's form may send (JSON characters).
MAX_FORM_ANSWER_CHARS = 256_000


def _validate_form(answer: Any) -> dict[str, Any]:
    """A custom template's answer: the crowd-form's JSON object, kept as it is."""
    if not isinstance(answer, dict):
        raise _bad(f"a custom task's answer is the form's JSON object, got "
                   f"{type(answer).__name__}", "answer")
    size = len(json.dumps(answer))
    if size > MAX_FORM_ANSWER_CHARS:
        raise _bad(f"the answer has {size:,} characters of JSON; at most "
                   f"{MAX_FORM_ANSWER_CHARS:,}", "answer")
    return answer


def _objects(answer: Any, key: str) -> list[Any]:
    if not isinstance(answer, dict) or not isinstance(answer.get(key), list):
        raise _bad(f"the answer must be an object with a list {key!r}", f"answer.{key}")
    return answer[key]


def _validate_spans(labels: Sequence[str], answer: Any, text: str) -> dict[str, Any]:
    spans = []
    for i, entity in enumerate(_objects(answer, "entities")):
        where = f"answer.entities[{i}]"
        if not isinstance(entity, dict):
            raise _bad(f"{where} must be an object with start, end and label", where)
        for key in ("start", "end"):
            value = entity.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise _bad(f"{where}.{key} must be a whole number (a character offset), "
                           f"got {value!r}", f"{where}.{key}")
        start, end, label = entity["start"], entity["end"], entity.get("label")
        if not 0 <= start < end <= len(text):
            raise _bad(f"{where}: span {start}-{end} must satisfy 0 <= start < end <= "
                       f"{len(text)} (the text's length)", f"{where}.end"
                       if 0 <= start < len(text) else f"{where}.start")
        if label not in labels:
            raise _bad(f"{where}.label {label!r} is not one of the job's labels "
                       f"{list(labels)}", f"{where}.label", labels)
        spans.append({"start": start, "end": end, "label": label})
    spans.sort(key=lambda s: (s["start"], s["end"]))
    for before, after in zip(spans, spans[1:], strict=False):
        if after["start"] < before["end"]:
            raise _bad(f"answer.entities: span {after['start']}-{after['end']} overlaps span "
                       f"{before['start']}-{before['end']}", "answer.entities")
    return {"entities": spans}


def _validate_boxes(labels: Sequence[str], answer: Any) -> dict[str, Any]:
    boxes = []
    for i, box in enumerate(_objects(answer, "boundingBoxes")):
        where = f"answer.boundingBoxes[{i}]"
        if not isinstance(box, dict):
            raise _bad(f"{where} must be an object with label, left, top, width, height",
                       where)
        if box.get("label") not in labels:
            raise _bad(f"{where}.label {box.get('label')!r} is not one of the job's labels "
                       f"{list(labels)}", f"{where}.label", labels)
        for key in ("left", "top", "width", "height"):
            value: Any = box.get(key)
            if not _number(value):
                raise _bad(f"{where}.{key} must be a number of pixels, got {value!r}",
                           f"{where}.{key}")
            if key in ("width", "height") and value <= 0:
                raise _bad(f"{where}.{key} must be more than 0, got {value!r}",
                           f"{where}.{key}")
            if key in ("left", "top") and value < 0:
                raise _bad(f"{where}.{key} must be 0 or more, got {value!r}", f"{where}.{key}")
        boxes.append({k: box[k] for k in ("label", "left", "top", "width", "height")})
    return {"boundingBoxes": boxes}


# ----------------------------------------------------------------------------- consolidation
def majority_share(answers: Sequence[Any]) -> float:
    """Share of answers equal to the most common one (1.0 for no or one answer).

    Structured answers (lists, dicts) count as equal when their JSON is, so a multi-label
    answer or a set of spans must match as a whole.
    """
    if not answers:
        return 1.0
    keys = Counter(json.dumps(a, sort_keys=True) for a in answers)
    return keys.most_common(1)[0][1] / len(answers)


def consolidate_spans(answers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Named-entity spans a strict majority of the item's workers marked identically.

    Args:
        answers: One stored answer per worker (``{"entities": [...]}``).

    Returns:
        Spans ``{"start", "end", "label", "confidence"}`` sorted by start, where confidence
        is the share of the item's workers who marked exactly that (start, end, label).
        Majority spans cannot overlap: two overlapping spans would need more than all the
        workers between them, since no worker's own spans overlap.
    """
    n = len(answers)
    votes = Counter((e["start"], e["end"], e["label"]) for a in answers
                    for e in a.get("entities", []))
    return [{"start": s, "end": e, "label": label, "confidence": round(c / n, 4)}
            for (s, e, label), c in sorted(votes.items()) if c * 2 > n]


def _iou(a: dict[str, float], b: dict[str, float]) -> float:
    x1, y1 = max(a["left"], b["left"]), max(a["top"], b["top"])
    x2 = min(a["left"] + a["width"], b["left"] + b["width"])
    y2 = min(a["top"] + a["height"], b["top"] + b["height"])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a["width"] * a["height"] + b["width"] * b["height"] - inter
    return inter / union if union > 0 else 0.0


def consolidate_boxes(answers: Sequence[dict[str, Any]], iou: float = 0.5
                      ) -> list[dict[str, Any]]:
    """Boxes a strict majority of the item's workers drew around the same object.

    Greedy matching, worker by worker: each box joins the cluster of the same label whose
    mean box overlaps it most (IoU >= ``iou``) and holds no box from that worker yet, else
    starts a new cluster. A cluster with boxes from more than half the workers becomes one
    box, the mean of its boxes; confidence is the share of workers in it (rounded).

    Args:
        answers: One stored answer per worker (``{"boundingBoxes": [...]}``).
        iou: Least intersection-over-union for two boxes to be the same object.

    Returns:
        Boxes ``{"label", "left", "top", "width", "height", "confidence"}``.
    """
    n = len(answers)
    clusters: list[dict[str, Any]] = []
    for worker, answer in enumerate(answers):
        for box in answer.get("boundingBoxes", []):
            best, best_iou = None, iou
            for cluster in clusters:
                if cluster["label"] != box["label"] or worker in cluster["workers"]:
                    continue
                overlap = _iou(cluster["mean"], box)
                if overlap >= best_iou:
                    best, best_iou = cluster, overlap
            if best is None:
                best = {"label": box["label"], "workers": set(), "boxes": []}
                clusters.append(best)
            best["workers"].add(worker)
            best["boxes"].append(box)
            best["mean"] = {k: sum(b[k] for b in best["boxes"]) / len(best["boxes"])
                            for k in ("left", "top", "width", "height")}
    out = []
    for cluster in clusters:
        if len(cluster["workers"]) * 2 > n:
            out.append({"label": cluster["label"],
                        **{k: round(v, 2) for k, v in cluster["mean"].items()},
                        "confidence": round(len(cluster["workers"]) / n, 4)})
    return sorted(out, key=lambda b: (b["top"], b["left"]))
