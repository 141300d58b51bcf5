"""The adapter: a saved model, a model name, a scikit-learn model or a plain function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_fixtures import model_home_fixture, processed_fixture, trained_fixture  # noqa: F401

from loopworks.errors import ConfigurationError, ValidationError
from loopworks.models import (
    Predictor,
    ProbabilityPredictor,
    TrainingResult,
    as_predictor,
    save_model,
)


def keyword_model(texts: list[str]) -> np.ndarray:
    """A stand-in model: 'bad' -> negative, 'good' -> positive, else neutral."""
    lower = np.char.lower(np.asarray(texts, dtype=str))
    bad = np.char.find(lower, "bad") >= 0
    good = np.char.find(lower, "good") >= 0
    probs = np.full((len(texts), 3), 0.1)
    probs[bad, 0] = probs[good & ~bad, 2] = 0.8
    probs[~bad & ~good, 1] = 0.8
    return probs


def test_a_function_stands_in_for_a_model() -> None:
    predictor = as_predictor(keyword_model, ["negative", "neutral", "positive"])
    assert isinstance(predictor, Predictor) and predictor.name == "keyword_model"
    out = predictor.predict(["Bad zip", "good fit", "arrived"])
    assert out.labels.tolist() == ["negative", "positive", "neutral"]
    assert out.confidence == pytest.approx([0.8, 0.8, 0.8])
    assert out.margin == pytest.approx([0.7, 0.7, 0.7])
    assert predictor(["good"]).shape == (1, 3)
    assert predictor.predict_proba([]).shape == (0, 3)
    with pytest.raises(ConfigurationError, match="needs classes"):
        as_predictor(keyword_model)


@pytest.mark.parametrize(("function", "message"), [
    (lambda texts: np.ones((len(texts), 2)) / 2, r"shape \(2, 2\); expected \(2, 3\)"),
    (lambda texts: np.full((len(texts), 3), 0.5), "do not sum to 1"),
    (lambda texts: np.array([[1.5, -0.5, 0.0]] * len(texts)), "negative probabilities"),
    (lambda texts: np.full((len(texts), 3), np.nan), "NaN or infinite"),
    (lambda texts: "nonsense", "not a numeric array|shape"),
])
def test_bad_probabilities_are_caught(function, message: str) -> None:
    predictor = as_predictor(function, ["a", "b", "c"])
    with pytest.raises(ValidationError, match=message):
        predictor.predict_proba(["x", "y"])


def test_saved_models_by_object_and_by_name(trained: TrainingResult) -> None:
    by_object = as_predictor(trained.model)
    assert by_object.classes == ("negative", "neutral", "positive")
    assert by_object.name == "sentiment:1" and by_object.card.version == 1
    save_model(trained.model, "again")  # into this test's LOOPWORKS_HOME
    by_name = as_predictor("again")
    assert by_name.name == "again:1"
    texts = ["Fits well and feels soft.", "Seams split on day one."]
    assert np.array_equal(by_name.predict_proba(texts), trained.model.predict_proba(texts))
    assert as_predictor(by_name) is by_name
    renamed = as_predictor(by_name, ["neg", "neu", "pos"])
    assert renamed.predict(texts).labels.tolist()[0] in ("neg", "neu", "pos")


def test_a_scikit_learn_classifier_fits_too() -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["good", "very good", "bad", "very bad"] * 5
    clf = make_pipeline(CountVectorizer(), LogisticRegression()).fit(texts, [1, 1, 0, 0] * 5)
    predictor = as_predictor(clf, ["negative", "positive"])
    assert predictor.predict(["good stuff"]).labels.tolist() == ["positive"]
    assert as_predictor(clf).classes == ("0", "1")
    with pytest.raises(ConfigurationError, match="3 class names given for a model with 2"):
        as_predictor(clf, ["a", "b", "c"])
    with pytest.raises(ConfigurationError, match="cannot predict with a int"):
        as_predictor(3)


def test_predictor_keeps_its_checks_for_review_code() -> None:
    predictor = ProbabilityPredictor(keyword_model, ("negative", "neutral", "positive"),
                                     name="kw")
    assert "kw" in repr(predictor)
    with pytest.raises(ConfigurationError, match="distinct class names"):
        ProbabilityPredictor(keyword_model, ("a", "a"))


def test_sum_tolerance_allows_float32_models(tmp_path: Path) -> None:
    def float32(texts: list[str]) -> np.ndarray:
        return (keyword_model(texts) / keyword_model(texts).sum(axis=1, keepdims=True)
                ).astype(np.float32)

    out = as_predictor(float32, ["n", "u", "p"]).predict_proba(["good"] * 1000)
    assert out.dtype == np.float64
