"""Predictions: class probabilities with the label, confidence, margin and entropy they imply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopworks.errors import ValidationError

__all__ = ["Predictions", "check_probabilities", "prediction_columns"]

#: Probabilities may be off by this much from summing to 1 (float32 models, rounding).
SUM_TOLERANCE = 1e-3


def prediction_columns(classes: Sequence[str]) -> list[str]:
    """Names of the columns a prediction adds to a table: prediction, confidence, prob_<c>."""
    return ["prediction", "confidence", *(f"prob_{c}" for c in classes)]


def check_probabilities(probabilities: Any, n_rows: int, classes: Sequence[str],
                        source: str = "the predictor") -> np.ndarray:
    """Validate a predictor's output and return it as a float64 ``(n_rows, k)`` array.

    Args:
        probabilities: What the predictor returned.
        n_rows: How many texts it was given.
        classes: The class names (``k`` of them).
        source: Who produced the probabilities, for the error message.

    Returns:
        The probabilities as a float64 array.

    Raises:
        ValidationError: Wrong shape, non-finite or negative values, or rows not summing to 1.
    """
    try:
        probs = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{source} returned something that is not a numeric array: "
                              f"{exc}") from None
    expected = (n_rows, len(classes))
    if probs.shape != expected:
        raise ValidationError(
            f"{source} returned an array of shape {probs.shape}; expected {expected} "
            f"(one row per text, one column per class: {', '.join(classes)})",
            expected=expected, got=probs.shape)
    if probs.size:
        if not np.isfinite(probs).all():
            rows = np.flatnonzero(~np.isfinite(probs).all(axis=1))
            raise ValidationError(f"{source} returned NaN or infinite probabilities "
                                  f"(rows {_rows(rows)})", rows=rows[:10].tolist())
        if probs.min() < 0:
            rows = np.flatnonzero((probs < 0).any(axis=1))
            raise ValidationError(f"{source} returned negative probabilities "
                                  f"(rows {_rows(rows)})", rows=rows[:10].tolist())
        off = np.abs(probs.sum(axis=1) - 1.0) > SUM_TOLERANCE
        if off.any():
            rows = np.flatnonzero(off)
            raise ValidationError(
                f"{source} returned probabilities whose rows do not sum to 1 (rows "
                f"{_rows(rows)}); apply a softmax to scores first", rows=rows[:10].tolist())
    return probs


def _rows(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:10])
    return shown + (f" and {rows.size - 10} more" if rows.size > 10 else "")


@dataclass(frozen=True)
class Predictions:
    """Class probabilities for a batch of texts and what follows from them.

    Attributes:
        classes: Class names, in column order of ``probabilities``.
        probabilities: ``(n, k)`` calibrated class probabilities (rows sum to 1).
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray

    def __len__(self) -> int:
        return int(self.probabilities.shape[0])

    @property
    def label_ids(self) -> np.ndarray:
        """Index of the most probable class per row."""
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> np.ndarray:
        """Name of the most probable class per row (an object array of str)."""
        return np.asarray(self.classes, dtype=object)[self.label_ids]

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class per row."""
        return self.probabilities.max(axis=1)

    @property
    def margin(self) -> np.ndarray:
        """Top probability minus the second one, per row (1.0 with a single class)."""
        if self.probabilities.shape[1] < 2:
            return np.ones(len(self))
        top2 = np.sort(self.probabilities, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    @property
    def entropy(self) -> np.ndarray:
        """Shannon entropy (natural log) of each row's distribution."""
        p = self.probabilities
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p), 0.0)
        return -terms.sum(axis=1)

    def to_frame(self) -> pd.DataFrame:
        """Columns ``prediction``, ``confidence`` and ``prob_<class>`` for each class."""
        columns: dict[str, Any] = {"prediction": self.labels.astype(str),
                                   "confidence": self.confidence}
        for i, name in enumerate(self.classes):
            columns[f"prob_{name}"] = self.probabilities[:, i]
        return pd.DataFrame(columns)

    def records(self) -> list[dict[str, Any]]:
        """One dict per row: ``label``, ``confidence`` and ``probabilities`` by class name.

        Handy as the prediction part of a human loop's input content.
        """
        labels = self.labels.tolist()
        confidence = self.confidence.tolist()
        probs = self.probabilities.tolist()
        return [{"label": label, "confidence": conf,
                 "probabilities": dict(zip(self.classes, row, strict=True))}
                for label, conf, row in zip(labels, confidence, probs, strict=True)]
