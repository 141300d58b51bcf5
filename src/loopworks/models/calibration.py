"""Calibrated confidence: temperature scaling, expected calibration error, reliability curves.

A classifier's top probability is only useful as a *confidence* (the thing a human-review
condition compares with a threshold) when it matches how often the classifier is right.
These functions measure that (ECE and the per-bin reliability curve, equal-width bins) and
fix it with temperature scaling fitted on held-out data. All of it is vectorised NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loopworks.errors import ValidationError

__all__ = [
    "ReliabilityCurve",
    "TemperatureScaler",
    "expected_calibration_error",
    "reliability_curve",
    "softmax",
    "top_label",
]

_EPS = 1e-12


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits.

    Args:
        logits: An ``(n, k)`` array.

    Returns:
        An ``(n, k)`` array whose rows sum to 1.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def top_label(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence (top probability) and correctness of the top label, per row.

    Args:
        probabilities: ``(n, k)`` class probabilities.
        labels: ``(n,)`` true class indices.

    Returns:
        ``(confidence, correct)``: float and bool arrays of length ``n``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    return probabilities.max(axis=1), predicted == np.asarray(labels)


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin mean confidence against accuracy, over equal-width bins of ``[0, 1]``.

    Bins are closed on the right, ``(lower, upper]``, except the first, which also holds 0.
    Empty bins have ``count`` 0 and NaN confidence and accuracy.
    """

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean of |accuracy - confidence|."""
        total = int(self.count.sum())
        if total == 0:
            return 0.0
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((self.count[filled] * gaps).sum() / total)

    def to_dict(self) -> dict[str, list[float | int | None]]:
        """The curve as JSON-ready lists (NaN becomes None)."""

        def clean(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else round(float(v), 6) for v in values]

        return {"lower": clean(self.lower), "upper": clean(self.upper),
                "count": [int(c) for c in self.count],
                "confidence": clean(self.confidence), "accuracy": clean(self.accuracy)}


def reliability_curve(confidence: np.ndarray, correct: np.ndarray,
                      n_bins: int = 15) -> ReliabilityCurve:
    """Bin predictions by confidence and compare each bin's mean confidence with its accuracy.

    Args:
        confidence: ``(n,)`` confidences in ``[0, 1]`` (usually the top class probability).
        correct: ``(n,)`` booleans, whether each prediction was right.
        n_bins: Number of equal-width bins over ``[0, 1]``.

    Returns:
        The :class:`ReliabilityCurve`.

    Raises:
        ValidationError: Lengths differ, ``n_bins`` < 1, or a confidence is outside [0, 1].
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.shape != correct.shape:
        raise ValidationError(f"confidence has {confidence.size} values but correct has "
                              f"{correct.size}")
    if n_bins < 1:
        raise ValidationError(f"n_bins must be at least 1, got {n_bins}")
    if confidence.size and (np.isnan(confidence).any() or confidence.min() < -_EPS
                            or confidence.max() > 1 + _EPS):
        raise ValidationError("confidence values must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right=True: a value equal to an edge belongs to the bin below it, (lower, upper].
    index = np.digitize(confidence, edges[1:-1], right=True)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    return ReliabilityCurve(lower=edges[:-1], upper=edges[1:], count=count,
                            confidence=mean_conf, accuracy=accuracy)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               n_bins: int = 15) -> float:
    """Expected calibration error over ``n_bins`` equal-width confidence bins.

    ``ECE = sum_b (|B_b| / n) * |accuracy(B_b) - mean_confidence(B_b)|``.

    Args:
        confidence: ``(n,)`` confidences in ``[0, 1]``.
        correct: ``(n,)`` booleans, whether each prediction was right.
        n_bins: Number of equal-width bins over ``[0, 1]``.

    Returns:
        The ECE, between 0 (perfectly calibrated) and 1.
    """
    return reliability_curve(confidence, correct, n_bins).ece


class TemperatureScaler:
    """Temperature scaling: ``softmax(log p / T)`` with one ``T`` fitted on held-out data.

    It minimises the negative log-likelihood on the held-out rows. Dividing every log
    probability by the same ``T`` never changes the top class, so accuracy stays as it is and
    only the confidence moves. Works for any classifier that gives probabilities.
    """

    def __init__(self) -> None:
        self.temperature = 1.0

    def fit(self, probabilities: np.ndarray, labels: np.ndarray) -> TemperatureScaler:
        """Fit the temperature on held-out probabilities and true labels.

        Args:
            probabilities: ``(n, k)`` uncalibrated class probabilities.
            labels: ``(n,)`` true class indices.

        Returns:
            ``self``.

        Raises:
            ValidationError: No rows, or shapes that do not match.
        """
        from scipy.optimize import minimize_scalar

        logp = _log(probabilities)
        labels = np.asarray(labels, dtype=np.int64)
        if logp.shape[0] == 0 or logp.shape[0] != labels.shape[0]:
            raise ValidationError(f"temperature scaling needs held-out rows with labels, got "
                                  f"{logp.shape[0]} probabilities and {labels.shape[0]} labels")
        rows = np.arange(labels.shape[0])

        def nll(log_t: float) -> float:
            scaled = logp / np.exp(log_t)
            scaled -= scaled.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(scaled).sum(axis=1))
            return float((log_norm - scaled[rows, labels]).mean())

        # log T in [-4, 4] covers T from 0.02 to 55, far beyond any useful correction.
        result = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded",
                                 options={"xatol": 1e-5})
        self.temperature = float(np.exp(result.x))
        return self

    def transform(self, probabilities: np.ndarray) -> np.ndarray:
        """Rescale probabilities with the fitted temperature.

        Args:
            probabilities: ``(n, k)`` uncalibrated class probabilities.

        Returns:
            ``(n, k)`` calibrated probabilities (rows sum to 1, same argmax).
        """
        return softmax(_log(probabilities) / self.temperature)

    def __repr__(self) -> str:
        return f"TemperatureScaler(temperature={self.temperature:.4f})"


def _log(probabilities: np.ndarray) -> np.ndarray:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2:
        raise ValidationError(f"probabilities must be a 2-D (rows, classes) array, got "
                              f"shape {probs.shape}")
    return np.log(np.clip(probs, _EPS, 1.0))
