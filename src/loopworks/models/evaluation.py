"""Test-split report: accuracy, macro F1, ECE before and after calibration, reliability PNG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopworks.models.calibration import ReliabilityCurve, reliability_curve, top_label

__all__ = ["Evaluation", "evaluate_probabilities", "plot_reliability"]


@dataclass(frozen=True)
class Evaluation:
    """How a model does on labeled held-out rows.

    Attributes:
        rows: Number of rows evaluated.
        accuracy: Share of rows whose top class is right (calibrated model).
        macro_f1: Unweighted mean of the per-class F1 scores.
        ece: Expected calibration error of the calibrated confidence.
        ece_uncalibrated: The same before calibration.
        nll: Mean negative log-likelihood (calibrated); ``nll_uncalibrated`` before.
        per_class_f1: F1 score by class name.
        confusion: Confusion matrix, rows true class, columns predicted class.
        reliability: Reliability curve of the calibrated confidence; ``..._uncalibrated``
            before calibration.
        n_bins: Number of equal-width bins of the ECE and the curves.
    """

    rows: int
    accuracy: float
    macro_f1: float
    ece: float
    ece_uncalibrated: float
    nll: float
    nll_uncalibrated: float
    accuracy_uncalibrated: float
    per_class_f1: dict[str, float]
    confusion: list[list[int]]
    reliability: ReliabilityCurve
    reliability_uncalibrated: ReliabilityCurve
    n_bins: int

    def metrics(self) -> dict[str, float | int]:
        """The headline numbers (for the model card and the metrics table)."""
        return {"rows": self.rows, "accuracy": round(self.accuracy, 6),
                "macro_f1": round(self.macro_f1, 6), "ece": round(self.ece, 6),
                "ece_uncalibrated": round(self.ece_uncalibrated, 6),
                "nll": round(self.nll, 6), "nll_uncalibrated": round(self.nll_uncalibrated, 6),
                "accuracy_uncalibrated": round(self.accuracy_uncalibrated, 6),
                "n_bins": self.n_bins}

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {**self.metrics(), "per_class_f1": self.per_class_f1,
                "confusion": self.confusion,
                "reliability": self.reliability.to_dict(),
                "reliability_uncalibrated": self.reliability_uncalibrated.to_dict()}


def evaluate_probabilities(calibrated: np.ndarray, uncalibrated: np.ndarray,
                           labels: np.ndarray, classes: Sequence[str],
                           n_bins: int = 15) -> Evaluation:
    """Score calibrated and uncalibrated probabilities against true label ids.

    Args:
        calibrated: ``(n, k)`` calibrated probabilities.
        uncalibrated: ``(n, k)`` probabilities before calibration.
        labels: ``(n,)`` true label ids.
        classes: Class names.
        n_bins: Equal-width bins for the ECE and the reliability curves.

    Returns:
        The :class:`Evaluation`.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    labels = np.asarray(labels, dtype=np.int64)
    k = len(classes)
    predicted = calibrated.argmax(axis=1)
    f1 = f1_score(labels, predicted, labels=np.arange(k), average=None, zero_division=0)
    conf, correct = top_label(calibrated, labels)
    conf_raw, correct_raw = top_label(uncalibrated, labels)
    curve = reliability_curve(conf, correct, n_bins)
    curve_raw = reliability_curve(conf_raw, correct_raw, n_bins)
    return Evaluation(
        rows=int(labels.size), accuracy=float(correct.mean()) if labels.size else 0.0,
        macro_f1=float(np.mean(f1)), ece=curve.ece, ece_uncalibrated=curve_raw.ece,
        nll=_nll(calibrated, labels), nll_uncalibrated=_nll(uncalibrated, labels),
        accuracy_uncalibrated=float(correct_raw.mean()) if labels.size else 0.0,
        per_class_f1={name: round(float(v), 6) for name, v in zip(classes, f1, strict=True)},
        confusion=confusion_matrix(labels, predicted, labels=np.arange(k)).tolist(),
        reliability=curve, reliability_uncalibrated=curve_raw, n_bins=n_bins)


def _nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    if labels.size == 0:
        return 0.0
    picked = probabilities[np.arange(labels.size), labels]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def plot_reliability(evaluation: Evaluation, path: str | Path, title: str = "") -> Path:
    """Draw the reliability diagram (before and after calibration) as a PNG.

    Args:
        evaluation: What :func:`evaluate_probabilities` returned.
        path: Where to write the PNG.
        title: Title above the chart (e.g. the model name).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 7), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        for curve, name, style in (
            (evaluation.reliability_uncalibrated,
             f"uncalibrated (ECE {evaluation.ece_uncalibrated:.3f})", "o-"),
            (evaluation.reliability, f"calibrated (ECE {evaluation.ece:.3f})", "s-"),
        ):
            filled = curve.count > 0
            ax.plot(curve.confidence[filled], curve.accuracy[filled], style, label=name)
        ax.set_ylabel("accuracy in bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="upper left")
        ax.set_title(title or f"Reliability on the test split ({evaluation.rows:,} rows)")
        curve = evaluation.reliability
        width = float(curve.upper[0] - curve.lower[0])
        hist.bar(curve.lower, curve.count, width=width, align="edge", edgecolor="white")
        hist.set_xlabel(f"confidence ({evaluation.n_bins} equal-width bins)")
        hist.set_ylabel("rows")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
