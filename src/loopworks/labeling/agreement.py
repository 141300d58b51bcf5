"""Inter-annotator agreement: Cohen's kappa, Fleiss' kappa and Krippendorff's alpha.

All three are computed from count tables built with ``np.bincount`` over integer-coded items
and labels, so they take milliseconds on tens of thousands of answers. Answer tables are long:
one row per (item, worker, label), as for :func:`loopworks.labeling.consolidate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopworks.errors import ConfigurationError, InputError, ValidationError

# One validation path for every answer table in the labeling package.
from loopworks.labeling.consolidation import code_answers

__all__ = ["LEVELS", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha"]

LEVELS = ("nominal", "ordinal", "interval", "ratio")
Level = Literal["nominal", "ordinal", "interval", "ratio"]


def cohen_kappa(a: Sequence[Any] | pd.Series | np.ndarray,
                b: Sequence[Any] | pd.Series | np.ndarray) -> float:
    """Cohen's kappa between two annotators who labeled the same items.

    Args:
        a: The first annotator's labels, one per item.
        b: The second annotator's labels for the same items, in the same order. Pairs where
            either label is missing (None/NaN) are left out.

    Returns:
        Kappa in [-1, 1]; NaN when chance agreement is already perfect (both annotators
        used one and the same label throughout), where kappa is undefined.

    Raises:
        InputError: The sequences differ in length or share no complete pair.
    """
    first, second = pd.Series(list(a), dtype=object), pd.Series(list(b), dtype=object)
    if len(first) != len(second):
        raise InputError(f"cohen_kappa needs two equally long label sequences, got "
                         f"{len(first)} and {len(second)}", file="labels")
    complete = (first.notna() & second.notna()).to_numpy()
    n = int(complete.sum())
    if n == 0:
        raise InputError("cohen_kappa: no item has a label from both annotators",
                         file="labels")
    codes, classes = pd.factorize(pd.concat([first[complete], second[complete]]))
    k = len(classes)
    table = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k) / n
    observed = float(np.trace(table))
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    return _chance_corrected(observed, expected)


def fleiss_kappa(answers: pd.DataFrame, *, item: str = "item", worker: str = "worker",
                 label: str = "label") -> float:
    """Fleiss' kappa for many raters, also when items have different numbers of raters.

    Per item, agreement is the share of agreeing rater pairs,
    ``P_i = (sum_j n_ij**2 - n_i) / (n_i * (n_i - 1))``; the mean over items is compared
    with chance agreement ``sum_j p_j**2`` from the pooled label shares. With the same
    number of raters on every item this is exactly Fleiss (1971); with varying numbers each
    item counts equally and the label shares pool all ratings. Items with fewer than two
    answers are ignored.

    Args:
        answers: One row per (item, worker, label).
        item: Column holding the item id.
        worker: Column holding the worker id (each worker rates an item at most once).
        label: Column holding the label.

    Returns:
        Kappa (1 is perfect agreement, 0 chance level); NaN when only one label occurs.

    Raises:
        InputError: Missing columns, an empty table, empty cells, or no item with two answers.
        ValidationError: A worker rated the same item twice.
    """
    counts, _ = _pairable_counts(answers, item, worker, label, "fleiss_kappa")
    per_item = counts.sum(axis=1)
    agreeing = ((counts**2).sum(axis=1) - per_item) / (per_item * (per_item - 1))
    shares = counts.sum(axis=0) / counts.sum()
    return _chance_corrected(float(agreeing.mean()), float(shares @ shares))


def krippendorff_alpha(answers: pd.DataFrame, *, item: str = "item", worker: str = "worker",
                       label: str = "label", level: Level = "nominal") -> float:
    """Krippendorff's alpha from a coincidence matrix, tolerating missing answers.

    Follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": items (units)
    with fewer than two answers are not pairable and are ignored; rows with an empty label
    count as missing.

    Args:
        answers: One row per (item, worker, label); workers need not answer every item.
        item: Column holding the item id.
        worker: Column holding the worker id (each worker rates an item at most once).
        label: Column holding the label; numeric for every level but ``nominal``.
        level: Measurement level, one of :data:`LEVELS`; picks the difference function.

    Returns:
        Alpha (1 is perfect reliability, 0 chance level); NaN when only one value occurs.

    Raises:
        ConfigurationError: Unknown level.
        InputError: Missing columns, an empty table or no item with two answers.
        ValidationError: A worker rated an item twice, or non-numeric labels for a numeric
            level.
    """
    if level not in LEVELS:
        raise ConfigurationError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}",
                                 setting="level", valid_values=list(LEVELS))
    if isinstance(answers, pd.DataFrame) and label in answers.columns:
        answers = answers[answers[label].notna()]  # missing values are simply absent
    counts, classes = _pairable_counts(answers, item, worker, label, "krippendorff_alpha")
    per_item = counts.sum(axis=1)
    weighted = counts / (per_item - 1)[:, None]
    coincidences = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    marginals = coincidences.sum(axis=1)
    total = marginals.sum()
    delta = _difference(level, classes, marginals)
    disagreement = float((coincidences * delta).sum())
    expected = float((np.outer(marginals, marginals) * delta).sum())
    if expected == 0:
        return float("nan")
    return 1.0 - (total - 1) * disagreement / expected


def _difference(level: str, classes: pd.Index, marginals: np.ndarray) -> np.ndarray:
    """Squared difference between every pair of values for the measurement level."""
    k = len(classes)
    if level == "nominal":
        return 1.0 - np.eye(k)
    try:
        values = np.asarray(classes, dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(f"level {level!r} needs numeric labels, got "
                              f"{list(classes)[:5]!r}", level=level) from None
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    if level == "ratio":
        sums = np.add.outer(values, values)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(sums == 0, 0.0, np.subtract.outer(values, values) / sums)
        return ratio**2
    # Ordinal: the marginals between two ranks (inclusive), less half of both ends.
    cumulative = np.concatenate([[0.0], np.cumsum(marginals)])
    low = np.minimum.outer(np.arange(k), np.arange(k))
    high = np.maximum.outer(np.arange(k), np.arange(k))
    between = cumulative[high + 1] - cumulative[low]
    return (between - np.add.outer(marginals, marginals) / 2) ** 2


def _pairable_counts(answers: pd.DataFrame, item: str, worker: str, label: str,
                     measure: str) -> tuple[np.ndarray, pd.Index]:
    """Items x labels count table, keeping only items with two or more answers."""
    coded = code_answers(answers, item, worker, label, classes=None)
    counts = coded.votes()
    counts = counts[counts.sum(axis=1) >= 2]
    if len(counts) == 0:
        raise InputError(f"{measure}: no item has two or more answers, so there is nothing "
                         "to compare", file="answers")
    return counts, coded.classes


def _chance_corrected(observed: float, expected: float) -> float:
    """(observed - expected) / (1 - expected), NaN when expected agreement is perfect."""
    if np.isclose(expected, 1.0):
        return float("nan")
    return (observed - expected) / (1.0 - expected)
