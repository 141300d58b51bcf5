"""Human-loop activation conditions in Augmented AI's JSON shape, for any classifier.

A2I evaluates activation conditions only for Amazon's own services; here they apply to any
model that returns class probabilities. The document is A2I's::

    {"Conditions": [
        {"ConditionType": "ClassificationConfidenceCheck",
         "ConditionParameters": {"ClassificationLabel": "*", "ConfidenceLessThan": 0.7}},
        {"Or": [{"ConditionType": "MarginBelow", "ConditionParameters": {"Margin": 0.2}},
                {"ConditionType": "Sampling",
                 "ConditionParameters": {"RandomSamplingPercentage": 5}}]}]}

Each member of the top-level ``Conditions`` array is independent: a loop starts when any
one holds (as in A2I). ``And`` / ``Or`` combine conditions, nested at most two levels deep.

Condition types (confidences are probabilities, 0 to 1):

* ``ClassificationConfidenceCheck``: the predicted (top) class is ``ClassificationLabel``
  (or any class for ``"*"``) and its confidence is ``ConfidenceLessThan`` /
  ``ConfidenceGreaterThan`` (``...Equals`` variants too; bounds given together must all hold).
* ``MarginBelow``: top-1 minus top-2 probability is below ``Margin``.
* ``EntropyAbove``: the distribution's entropy, normalised by log(classes) so it lies in
  [0, 1] whatever the number of classes, is above ``Entropy``.
* ``Sampling``: ``RandomSamplingPercentage`` percent of inputs, chosen by a hash of the
  flow name and the input content, so the same input always gets the same answer.

Evaluation is vectorised: a batch of N predictions is N x K probabilities in, one boolean
per prediction and the names of the conditions that fired out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopworks.errors import ConfigurationError

__all__ = ["CONDITION_TYPES", "ActivationConditions", "Evaluation", "sampling_draw"]

_BOUNDS = {
    "ConfidenceLessThan": np.less,
    "ConfidenceLessThanEquals": np.less_equal,
    "ConfidenceGreaterThan": np.greater,
    "ConfidenceGreaterThanEquals": np.greater_equal,
}
CONDITION_TYPES: dict[str, set[str]] = {
    "ClassificationConfidenceCheck": {"ClassificationLabel", *_BOUNDS},
    "MarginBelow": {"Margin"},
    "EntropyAbove": {"Entropy"},
    "Sampling": {"RandomSamplingPercentage"},
}
MAX_DEPTH = 2


def _bad(path: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"activation conditions, {path}: {message}",
                              setting="activation_conditions", path=path)


def _probability(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _bad(path, f"must be a number from 0 to 1 (a probability), not {value!r}")
    return float(value)


@dataclass(frozen=True)
class _Simple:
    path: str
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class _Combined:
    path: str
    op: str  # "And" | "Or"
    members: tuple[_Simple | _Combined, ...]


@dataclass
class Evaluation:
    """The outcome per prediction: whether a loop starts, and which conditions fired."""

    activated: np.ndarray  # bool, one per prediction
    fired: list[list[str]]  # per prediction, the simple conditions that held

    def __len__(self) -> int:
        return len(self.activated)


def sampling_draw(flow: str, content: Any) -> float:
    """A number in [0, 100) fixed by the flow and the input (the Sampling condition's die)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{flow}\x00{canonical}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000 / 10_000


class ActivationConditions:
    """A validated activation-conditions document."""

    def __init__(self, document: dict[str, Any] | str | None,
                 labels: Sequence[str] | None = None) -> None:
        if document is None:
            document = {"Conditions": []}
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except json.JSONDecodeError as exc:
                raise _bad("(document)", f"not valid JSON ({exc.msg})") from None
        if not isinstance(document, dict) or set(document) != {"Conditions"}:
            raise _bad("(document)", 'must be an object with one key, "Conditions"')
        conditions = document["Conditions"]
        if not isinstance(conditions, list):
            raise _bad("Conditions", "must be a list")
        self.labels = list(labels) if labels is not None else None
        self.document = document
        self.members = tuple(self._parse(c, f"Conditions[{i}]", 0)
                             for i, c in enumerate(conditions))

    @property
    def always(self) -> bool:
        """No conditions: every input goes to people (A2I's behaviour for custom tasks)."""
        return not self.members

    def _parse(self, node: Any, path: str, depth: int) -> _Simple | _Combined:
        if not isinstance(node, dict):
            raise _bad(path, "each condition must be an object")
        ops = [k for k in ("And", "Or") if k in node]
        if ops:
            if len(node) != 1:
                raise _bad(path, f"{ops[0]} must be the object's only key")
            if depth >= MAX_DEPTH:
                raise _bad(path, f"And/Or nest at most {MAX_DEPTH} levels deep")
            members = node[ops[0]]
            if not isinstance(members, list) or len(members) < 2:
                raise _bad(f"{path}.{ops[0]}", "must list at least two conditions")
            return _Combined(path, ops[0], tuple(
                self._parse(m, f"{path}.{ops[0]}[{i}]", depth + 1)
                for i, m in enumerate(members)))
        unknown = set(node) - {"ConditionType", "ConditionParameters"}
        if unknown:
            raise _bad(path, f"unknown keys {sorted(unknown)}")
        kind = node.get("ConditionType")
        if kind not in CONDITION_TYPES:
            raise _bad(f"{path}.ConditionType", f"{kind!r} is not one of "
                       f"{', '.join(CONDITION_TYPES)}")
        params = node.get("ConditionParameters")
        if not isinstance(params, dict):
            raise _bad(f"{path}.ConditionParameters", "must be an object")
        where = f"{path}.ConditionParameters"
        extra = set(params) - CONDITION_TYPES[kind]
        if extra:
            raise _bad(where, f"unknown parameters {sorted(extra)} for {kind}; allowed: "
                       f"{', '.join(sorted(CONDITION_TYPES[kind]))}")
        checked: dict[str, Any] = {}
        if kind == "ClassificationConfidenceCheck":
            label = params.get("ClassificationLabel")
            if not isinstance(label, str) or not label:
                raise _bad(f"{where}.ClassificationLabel", 'name a class or "*"')
            if label != "*" and self.labels is not None and label not in self.labels:
                raise _bad(f"{where}.ClassificationLabel",
                           f"{label!r} is not one of the classes {self.labels}")
            bounds = {k: _probability(v, f"{where}.{k}") for k, v in params.items()
                      if k in _BOUNDS}
            if not bounds:
                raise _bad(where, f"give at least one of {', '.join(_BOUNDS)}")
            checked = {"ClassificationLabel": label, **bounds}
        elif kind == "MarginBelow":
            checked = {"Margin": _probability(params.get("Margin"), f"{where}.Margin")}
        elif kind == "EntropyAbove":
            checked = {"Entropy": _probability(params.get("Entropy"), f"{where}.Entropy")}
        else:
            pct = params.get("RandomSamplingPercentage")
            if isinstance(pct, bool) or not isinstance(pct, int | float) or not 0 <= pct <= 100:
                raise _bad(f"{where}.RandomSamplingPercentage",
                           f"must be a number from 0 to 100, not {pct!r}")
            checked = {"RandomSamplingPercentage": float(pct)}
        return _Simple(path, kind, checked)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, probabilities: np.ndarray | Sequence[Sequence[float]],
                 labels: Sequence[str], *, flow: str = "",
                 contents: Sequence[Any] | None = None) -> Evaluation:
        """Evaluate every condition on N x K class probabilities (columns in ``labels``)."""
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != len(labels):
            raise ConfigurationError(
                f"expected probabilities of shape (n, {len(labels)}) for classes {list(labels)}, "
                f"got {probs.shape}", setting="probabilities")
        n = probs.shape[0]
        if self.always:
            return Evaluation(np.ones(n, dtype=bool), [["(no conditions: always)"]
                                                      for _ in range(n)])
        order = np.argsort(-probs, axis=1, kind="stable")
        top = probs[np.arange(n), order[:, 0]] if n else np.empty(0)
        second = probs[np.arange(n), order[:, 1]] if n and probs.shape[1] > 1 \
            else np.zeros(n)
        context = _Context(probs, order[:, 0] if n else np.empty(0, int), top, second,
                           list(labels), flow, contents)
        held: dict[str, np.ndarray] = {}
        activated = np.zeros(n, dtype=bool)
        for member in self.members:
            activated |= self._holds(member, context, held)
        fired = [[path for path, mask in held.items() if mask[i]] if activated[i] else []
                 for i in range(n)]
        return Evaluation(activated, fired)

    def results(self, fired: Sequence[str]) -> dict[str, Any] | None:
        """A2I's ``humanTaskActivationConditionResults`` for one input: the conditions
        document with ``EvaluationResult`` on every condition, simple or combined, from the
        simple conditions that held (``fired``, as :meth:`evaluate` reports them). None
        when there are no conditions (nothing was evaluated)."""
        if self.always:
            return None
        held = set(fired)

        def annotate(node: _Simple | _Combined, given: dict[str, Any]) -> dict[str, Any]:
            if isinstance(node, _Simple):
                return {**given, "EvaluationResult": f"{node.path} {node.kind}" in held}
            members = [annotate(m, g) for m, g in zip(node.members, given[node.op],
                                                      strict=True)]
            outcomes = [m["EvaluationResult"] for m in members]
            return {node.op: members, "EvaluationResult": all(outcomes)
                    if node.op == "And" else any(outcomes)}

        return {"Conditions": [annotate(m, g) for m, g in zip(
            self.members, self.document["Conditions"], strict=True)]}

    def _holds(self, node: _Simple | _Combined, ctx: _Context,
               held: dict[str, np.ndarray]) -> np.ndarray:
        if isinstance(node, _Combined):
            masks = [self._holds(m, ctx, held) for m in node.members]
            return np.logical_and.reduce(masks) if node.op == "And" \
                else np.logical_or.reduce(masks)
        mask = ctx.simple(node)
        held[f"{node.path} {node.kind}"] = mask
        return mask


@dataclass
class _Context:
    probs: np.ndarray
    top_index: np.ndarray
    top: np.ndarray
    second: np.ndarray
    labels: list[str]
    flow: str
    contents: Sequence[Any] | None

    def simple(self, node: _Simple) -> np.ndarray:
        p = node.params
        if node.kind == "ClassificationConfidenceCheck":
            label = p["ClassificationLabel"]
            if label == "*":
                mask = np.ones(len(self.top), dtype=bool)
            elif label in self.labels:
                mask = self.top_index == self.labels.index(label)
            else:
                mask = np.zeros(len(self.top), dtype=bool)
            for key, compare in _BOUNDS.items():
                if key in p:
                    mask &= compare(self.top, p[key])
            return mask
        if node.kind == "MarginBelow":
            return (self.top - self.second) < p["Margin"]
        if node.kind == "EntropyAbove":
            k = self.probs.shape[1]
            if k < 2:
                return np.zeros(len(self.top), dtype=bool)
            safe = np.clip(self.probs, 1e-12, 1.0)
            entropy = -(self.probs * np.log(safe)).sum(axis=1) / math.log(k)
            return entropy > p["Entropy"]
        if self.contents is None:
            raise ConfigurationError("the Sampling condition needs the input contents",
                                     setting="contents")
        draws = np.fromiter((sampling_draw(self.flow, c) for c in self.contents),
                            dtype=np.float64, count=len(self.contents))
        return draws < p["RandomSamplingPercentage"]
