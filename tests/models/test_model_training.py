"""Training on generated reviews: accuracy, calibration on held-out data, the saved report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import model_home_fixture, processed_fixture, trained_fixture  # noqa: F401

from loopworks.errors import ConfigurationError, ValidationError
from loopworks.models import (
    DEFAULT_CLASSES,
    Predictions,
    SentimentModel,
    TrainingResult,
    read_labeled_data,
    train_model,
)


def test_accuracy_on_generated_reviews_is_well_above_chance(trained: TrainingResult) -> None:
    ev = trained.evaluation
    majority = max(trained.card.training_data["rows_by_class"].values()) / \
        trained.card.training_data["rows"]
    assert ev.rows == trained.card.training_data["rows_by_split"]["test"] > 200
    assert ev.accuracy > 0.85 and ev.accuracy > majority + 0.1
    assert ev.macro_f1 > 0.75  # chance is 1/3
    assert set(ev.per_class_f1) == set(DEFAULT_CLASSES)
    assert np.asarray(ev.confusion).sum() == ev.rows


def test_the_card_and_report_record_data_metrics_and_versions(trained: TrainingResult) -> None:
    card = trained.card
    assert (card.name, card.version, card.classes) == ("sentiment", 1, list(DEFAULT_CLASSES))
    data = card.training_data
    assert (data["text_column"], data["label_column"], data["split"]) == \
        ("review_body", "label_id", "data")
    assert data["rows"] == sum(data["rows_by_split"].values())
    assert len(data["sha256"]) == 64
    assert card.calibration["method"] == "temperature" and card.calibration["temperature"] > 0
    assert card.features["vocabulary"]["word"] > 100 and card.features["ngrams"]["char"] == [2, 5]
    assert card.metrics["test"]["accuracy"] == pytest.approx(trained.evaluation.accuracy, abs=1e-6)
    assert card.sklearn_version and card.created.endswith("+00:00")
    report = json.loads(Path(trained.report_path).read_text())
    assert report["test"]["ece"] == pytest.approx(trained.evaluation.ece, abs=1e-6)
    assert len(report["test"]["reliability"]["count"]) == 15
    assert sum(report["test"]["reliability"]["count"]) == trained.evaluation.rows
    png = Path(trained.plot_path).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert json.loads((card.path / "model.json").read_text())["version"] == 1


def test_calibration_keeps_or_improves_ece_on_held_out_rows(trained: TrainingResult) -> None:
    ev = trained.evaluation
    # Temperature scaling fits one number on validation; on the unseen test split it must not
    # make things worse beyond noise, and it never changes the predicted class.
    assert ev.ece <= ev.ece_uncalibrated + 0.01
    assert ev.nll <= ev.nll_uncalibrated + 0.005
    assert ev.accuracy == ev.accuracy_uncalibrated


def test_calibration_fixes_an_underconfident_model(processed: Path) -> None:
    # Strong regularisation (C=0.3) squeezes probabilities towards the prior: underconfident.
    data = read_labeled_data(processed)
    result = train_model("strong-l2", data, features="word", c=0.3, save=False)
    ev = result.evaluation
    assert result.card.calibration["temperature"] < 1  # sharpened
    assert ev.ece < ev.ece_uncalibrated - 0.02
    assert ev.nll < ev.nll_uncalibrated
    assert result.report_path is None and result.card.version == 0


def test_predict_returns_labels_confidence_and_probabilities(trained: TrainingResult) -> None:
    texts = ["Love it, fits perfectly and the colour is gorgeous.",
             "Cheap fabric, fell apart after one wash. Sent it back.",
             "Love it, fits perfectly and the colour is gorgeous."]
    out = trained.model.predict(texts)
    assert isinstance(out, Predictions) and len(out) == 3
    assert out.labels.tolist()[:2] == ["positive", "negative"]
    probs = trained.model.predict_proba(texts)
    assert probs.shape == (3, 3) and probs.sum(axis=1) == pytest.approx(np.ones(3))
    assert np.array_equal(probs[0], probs[2])
    assert out.confidence == pytest.approx(probs.max(axis=1))
    assert (out.margin >= 0).all() and (out.entropy >= 0).all()
    frame = out.to_frame()
    assert frame.columns.tolist() == ["prediction", "confidence", "prob_negative",
                                      "prob_neutral", "prob_positive"]
    record = out.records()[1]
    assert record["label"] == "negative" and set(record["probabilities"]) == set(DEFAULT_CLASSES)
    raw = trained.model.predict_proba(texts, calibrated=False)
    assert (raw.argmax(axis=1) == probs.argmax(axis=1)).all()
    assert trained.model.predict_proba([]).shape == (0, 3)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "none"])
def test_other_calibration_methods(processed: Path, method: str) -> None:
    data = read_labeled_data(processed)
    texts, labels = data.part("train")
    model = SentimentModel(features="word").fit(texts[:800], labels[:800])
    model.calibrate(*data.part("validation"), method=method)
    probs = model.predict_proba(data.part("test")[0])
    assert probs.shape[1] == 3 and probs.sum(axis=1) == pytest.approx(np.ones(len(probs)))


def test_training_errors_are_clear(processed: Path) -> None:
    with pytest.raises(ValidationError, match="not trained"):
        SentimentModel().predict_proba(["x"])
    with pytest.raises(ValidationError, match="neutral have no training rows"):
        SentimentModel().fit(["good", "bad"], np.array([2, 0]))
    with pytest.raises(ConfigurationError, match="unknown features"):
        SentimentModel(features="bert")
    with pytest.raises(ConfigurationError, match="two distinct class names"):
        SentimentModel(classes=["a", "a"])
    model = SentimentModel(features="word").fit(["good", "bad", "ok", "good", "bad", "ok"],
                                                np.array([2, 0, 1, 2, 0, 1]))
    with pytest.raises(ConfigurationError, match="unknown calibration"):
        model.calibrate(["good"], np.array([2]), method="platt")
    data = read_labeled_data(processed, split_column="no-such-column", split=(1.0, 0.0, 0.0))
    with pytest.raises(ValidationError, match="validation and test split"):
        train_model("x", data, save=False)
    with pytest.raises(ConfigurationError, match="invalid model name"):
        train_model("../escape", data, save=False)
