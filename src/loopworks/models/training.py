"""Train, calibrate, evaluate and save the baseline model in one call.

The model is fitted on the ``train`` split, its confidence is calibrated on ``validation``
and everything is reported on ``test``, which neither step has seen.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopworks.errors import ValidationError
from loopworks.models.classifier import SentimentModel
from loopworks.models.data import LabeledData
from loopworks.models.evaluation import Evaluation, evaluate_probabilities, plot_reliability
from loopworks.models.registry import ModelCard, ModelRegistry, validate_model_name

__all__ = ["TrainingResult", "train_model"]

REPORT_FILE = "report.json"
PLOT_FILE = "reliability.png"


@dataclass(frozen=True)
class TrainingResult:
    """A trained model and where it went.

    Attributes:
        model: The fitted, calibrated model.
        card: Its card (version and folder set when saved).
        evaluation: Test-split evaluation.
        report_path: The JSON report (None when not saved).
        plot_path: The reliability PNG (None when not saved).
        seconds: Wall time of fitting, calibrating and evaluating.
    """

    model: SentimentModel
    card: ModelCard
    evaluation: Evaluation
    report_path: Path | None
    plot_path: Path | None
    seconds: float


def train_model(name: str, data: LabeledData, *, features: str = "word+char",
                c: float = 4.0, calibration: str = "temperature", n_bins: int = 15,
                seed: int = 0, save: bool = True,
                home: str | os.PathLike[str] | None = None,
                log: Callable[[str], None] | None = None) -> TrainingResult:
    """Fit on ``train``, calibrate on ``validation``, report on ``test``, save as ``name``.

    Args:
        name: Model name in the registry.
        data: Labeled rows with their splits (see
            :func:`~loopworks.models.data.read_labeled_data`).
        features: ``word+char``, ``word`` or ``char`` TF-IDF n-grams.
        c: Inverse regularisation strength of the logistic regression.
        calibration: ``temperature``, ``sigmoid``, ``isotonic`` or ``none``.
        n_bins: Equal-width bins for the ECE and the reliability curve.
        seed: Random seed.
        save: Save as the next version of ``name`` (with report.json and reliability.png).
        home: loopworks home folder.
        log: Called with a short message at each step (the CLI prints them).

    Returns:
        The :class:`TrainingResult`.

    Raises:
        ValidationError: The train, validation or test split is empty, or a class has no
            training rows.
    """
    validate_model_name(name)
    say = log or (lambda message: None)
    counts = data.counts()
    empty = [s for s, n in counts.items() if n == 0]
    if empty:
        raise ValidationError(
            f"{data.source}: the {' and '.join(empty)} split(s) have no rows "
            f"({', '.join(f'{k} {v}' for k, v in counts.items())}); the model needs "
            "training, held-out calibration and test rows", splits=counts)
    started = time.perf_counter()
    model = SentimentModel(data.classes, features=features, c=c, seed=seed)
    train_texts, train_labels = data.part("train")
    say(f"fitting {features} TF-IDF + logistic regression on {len(train_texts):,} rows")
    model.fit(train_texts, train_labels)
    val_texts, val_labels = data.part("validation")
    say(f"calibrating ({calibration}) on {len(val_texts):,} held-out rows")
    model.calibrate(val_texts, val_labels, method=calibration)
    test_texts, test_labels = data.part("test")
    say(f"evaluating on {len(test_texts):,} test rows")
    calibrated, uncalibrated = model.predict_proba_both(test_texts)
    evaluation = evaluate_probabilities(calibrated, uncalibrated, test_labels, data.classes,
                                        n_bins=n_bins)
    seconds = time.perf_counter() - started

    calib: dict[str, object] = {"method": calibration, "fitted_on": "validation",
                                "rows": len(val_texts)}
    if calibration == "temperature":
        calib["temperature"] = round(float(model.calibrator.temperature), 6)
    card = ModelCard(
        name=name, classes=list(data.classes), features=model.describe_features(),
        calibration=calib,
        training_data={"source": data.source, "text_column": data.text_column,
                       "label_column": data.label_column, "rows": len(data),
                       "rows_by_split": counts, "rows_by_class": data.class_counts(),
                       "split": data.split_origin, "skipped": data.skipped,
                       "sha256": data.sha256(), "seed": seed},
        metrics={"test": evaluation.metrics(), "train_seconds": round(seconds, 3)})
    if not save:
        model.card = card
        return TrainingResult(model, card, evaluation, None, None, seconds)

    def write_report(folder: Path) -> None:
        report = {"model": name, "classes": list(data.classes), "test": evaluation.to_dict(),
                  "calibration": calib, "training_data": card.training_data}
        (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        plot_reliability(evaluation, folder / PLOT_FILE,
                         title=f"{name}: reliability on the test split "
                               f"({evaluation.rows:,} rows)")

    card = ModelRegistry(home).save(model, name, card, extra_files=write_report)
    model.card = card
    assert card.path is not None
    return TrainingResult(model, card, evaluation, card.path / REPORT_FILE,
                          card.path / PLOT_FILE, seconds)
