"""The decisions of automated labeling, as pure functions: how big the human validation set
is, which confidence threshold lets the machine label while holding a target accuracy, and
which items people should label next.

Ground Truth's loop (its "automated data labeling"): people label a random sample, part of
which is held out for validation; a model trained on the human labels labels every
unlabeled item whose confidence clears a threshold chosen on the validation items so that
machine labels reach the target accuracy; the most informative of the rest go to people;
repeat. The job orchestration lives in :mod:`loopworks.labeling.autolabel`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopworks.errors import ConfigurationError

__all__ = ["MIN_ITEMS", "Threshold", "agreement_needed", "annotator_accuracy_bound",
           "z_for",
           "choose_threshold", "initial_sample_sizes", "select_for_people",
           "wilson_lower_bound"]

#: Ground Truth needs at least this many items for automated labeling.
MIN_ITEMS = 1250


def initial_sample_sizes(n_items: int, seed_share: float = 0.1) -> tuple[int, int]:
    """(validation, training) items people label first.

    Validation is 20% of the data set below 5,000 items and 10% above, as Ground Truth
    holds out; the first training sample is ``seed_share`` of the items (at least 100).
    """
    if n_items < MIN_ITEMS:
        raise ConfigurationError(
            f"automated labeling needs at least {MIN_ITEMS} items (Ground Truth's minimum); "
            f"this job has {n_items}", setting="auto_label")
    validation = math.ceil(n_items * (0.2 if n_items < 5000 else 0.1))
    training = max(100, math.ceil(n_items * seed_share))
    return validation, min(training, n_items - validation)


def wilson_lower_bound(correct: np.ndarray | int, total: np.ndarray | int,
                       z: float) -> np.ndarray:
    """Lower end of the Wilson score interval for a proportion (vectorised)."""
    n = np.asarray(total, dtype=np.float64)
    k = np.asarray(correct, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / n, 0.0)
        centre = p + z * z / (2 * n)
        spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        bound = (centre - spread) / (1 + z * z / n)
    return np.where(n > 0, bound, 0.0)


@dataclass(frozen=True)
class Threshold:
    """The chosen confidence threshold and what it achieved on the validation items."""

    value: float | None  # None: no threshold holds the target; the machine labels nothing
    validation_accuracy: float | None  # accuracy of validation items at or above it
    validation_items: int  # how many validation items are at or above it
    lower_bound: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.value, "validation_accuracy": self.validation_accuracy,
                "validation_items": self.validation_items, "lower_bound": self.lower_bound}


def z_for(assurance: float) -> float:
    """Standard errors for a one-sided bound held with probability ``assurance``: 1.645 for
    0.95; 0 for 0.5, which takes the measured accuracy as it is (Ground Truth's way)."""
    from scipy.stats import norm

    if not 0.5 <= assurance < 1:
        raise ConfigurationError(f"assurance must be in [0.5, 1), got {assurance}",
                                 setting="assurance")
    return float(norm.ppf(assurance))


def agreement_needed(target: float, annotator_accuracy: float = 1.0) -> float:
    """How often the model must agree with people's labels for its own accuracy to reach
    ``target`` when people are right ``annotator_accuracy`` of the time.

    With model accuracy *a* and people's accuracy *q*, independent of each other, the two
    agree when both are right (*a·q*) or both are wrong the same way (at most
    *(1-a)(1-q)*, when every mistake of one matches the other's). Taking that worst case,
    agreement *a·q + (1-a)(1-q)* implies accuracy at least *a*. With ``annotator_accuracy``
    1 (people taken as always right, as Ground Truth measures) this is ``target`` itself;
    with people right 97% of the time, 0.923 agreement already means 0.95 accuracy.
    """
    q = float(annotator_accuracy)
    if not 0.5 < q <= 1:
        raise ConfigurationError(f"annotator accuracy must be in (0.5, 1], got {q}",
                                 setting="annotator_accuracy")
    return target * q + (1 - target) * (1 - q)


def annotator_accuracy_bound(correct: int, total: int, z: float = 1.645) -> float:
    """An upper bound (Wilson, ``z`` one-sided) on people's accuracy from their answers on
    gold items: the benefit of the doubt goes to the people, so every disagreement they
    might be responsible for is still charged to the model as far as the data allow. 1.0
    without gold answers."""
    if total <= 0:
        return 1.0
    return float(1.0 - wilson_lower_bound(total - correct, total, z))


def choose_threshold(confidence: np.ndarray, correct: np.ndarray, target: float, *,
                     z: float = 1.645, min_items: int = 20, prior_correct: int = 0,
                     prior_items: int = 0, annotator_accuracy: float = 1.0,
                     exact: np.ndarray | None = None, prior_exact: int = 0) -> Threshold:
    """The lowest confidence threshold at which the validation items above it are right
    often enough: the Wilson lower bound (``z`` standard errors; 1.645 is one-sided 95%) of
    their agreement with people reaches :func:`agreement_needed` for ``target`` (``target``
    itself when people are taken as always right), over at least ``min_items`` items.

    A lower threshold lets the machine label more; the bound, rather than the raw accuracy,
    keeps a lucky streak on a few validation items from passing.

    ``correct`` says whether the model agreed with people's label of each validation item.
    People make mistakes too: ``annotator_accuracy`` below 1 (measured on gold items, see
    :func:`annotator_accuracy_bound`) stops their mistakes from counting as the model's.
    Items marked ``exact`` were judged against a known answer instead of people's, so
    they must reach ``target`` itself; the bound then holds the mix of the two (``exact``
    items among the earlier rounds': ``prior_exact``).

    ``prior_items`` validation items (``prior_correct`` of them right) that earlier rounds
    already machine-labeled join the bound, so it holds the target for all machine labels
    so far; the new items above the threshold must then also be right at least ``target``
    of the time on their own, so a round never spends earlier rounds' margin on labels
    worse than the target. The returned accuracy, count and bound are cumulative (and,
    like ``correct``, measured against people's labels).
    """
    if not 0 < target < 1:
        raise ConfigurationError("the target accuracy must be between 0 and 1",
                                 setting="target_accuracy")
    versus_people = agreement_needed(target, annotator_accuracy)
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    known = np.zeros(correct.shape, bool) if exact is None else np.asarray(exact, dtype=bool)
    if confidence.shape != correct.shape or known.shape != correct.shape:
        raise ConfigurationError("confidence, correct and exact must have the same length",
                                 setting="validation")
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], correct[order]
    # What each item must reach: the target against a known answer, less against people.
    needed_new = np.cumsum(np.where(known[order], target, versus_people))
    needed = needed_new + prior_exact * target + (prior_items - prior_exact) * versus_people
    k_new = np.cumsum(hits)
    n_new = np.arange(1, len(conf) + 1)
    k, n = k_new + prior_correct, n_new + prior_items
    # Only cut between distinct confidences: all items at the threshold are in.
    last_of_value = np.r_[conf[1:] != conf[:-1], True] if len(conf) else np.array([], bool)
    bound = wilson_lower_bound(k, n, z)
    ok = last_of_value & (n >= min_items) & (bound * n >= needed - 1e-9)
    if prior_items:
        ok &= k_new >= needed_new - 1e-9
    if not ok.any():
        return Threshold(None, None, 0, None)
    i = int(np.flatnonzero(ok)[-1])  # the most items (lowest threshold) that still holds
    return Threshold(float(conf[i]), float(k[i] / n[i]), int(n[i]), float(bound[i]))


def select_for_people(probabilities: np.ndarray, k: int, *,
                      features: Any = None, diversity: bool = False,
                      pool_factor: int = 5, seed: int = 0) -> np.ndarray:
    """Indices of the ``k`` most informative items: smallest margin between the top two
    classes (uncertainty sampling). With ``diversity``, the ``pool_factor * k`` most
    uncertain are clustered on ``features`` (TF-IDF rows, embeddings) into ``k`` groups and
    the most uncertain item of each group is taken, so a batch does not spend people on
    near-duplicates."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if k <= 0 or len(probs) == 0:
        return np.array([], dtype=np.int64)
    if probs.shape[1] > 1:
        top2 = np.sort(probs, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    else:
        margin = np.zeros(len(probs))
    order = np.argsort(margin, kind="stable")
    if not diversity or features is None or k >= len(probs):
        return order[:k]
    from sklearn.cluster import KMeans, MiniBatchKMeans

    pool = order[:min(len(order), pool_factor * k)]
    kmeans = KMeans(n_clusters=k, random_state=seed, n_init=3) if len(pool) <= 5000 else \
        MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=max(1024, 2 * k))
    clusters = kmeans.fit_predict(features[pool])
    chosen: dict[int, int] = {}
    for index, cluster in zip(pool, clusters, strict=True):  # pool is most uncertain first
        chosen.setdefault(int(cluster), int(index))
    picked = list(chosen.values())
    if len(picked) < k:  # empty clusters: fill with the next most uncertain
        taken = set(picked)
        picked += [int(i) for i in pool if int(i) not in taken][:k - len(picked)]
    return np.array(picked[:k], dtype=np.int64)
