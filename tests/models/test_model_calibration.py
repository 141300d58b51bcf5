"""ECE and reliability curves against hand-computed numbers; temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from loopworks.errors import ValidationError
from loopworks.models import (
    TemperatureScaler,
    expected_calibration_error,
    reliability_curve,
    softmax,
    top_label,
)


def test_ece_matches_a_hand_computed_example() -> None:
    # 10 bins. (0.9, 1.0]: 4 rows at 0.95, 3 right -> |0.75 - 0.95| = 0.20, weight 4/8
    #          (0.5, 0.6]: 2 rows at 0.55, 1 right -> |0.50 - 0.55| = 0.05, weight 2/8
    #          (0.2, 0.3]: 2 rows at 0.25, 0 right -> |0.00 - 0.25| = 0.25, weight 2/8
    # ECE = 0.5 * 0.20 + 0.25 * 0.05 + 0.25 * 0.25 = 0.175
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55, 0.25, 0.25])
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=bool)
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.175)
    curve = reliability_curve(conf, correct, n_bins=10)
    assert curve.count.tolist() == [0, 0, 2, 0, 0, 2, 0, 0, 0, 4]
    assert curve.accuracy[[2, 5, 9]].tolist() == [0.0, 0.5, 0.75]
    assert curve.confidence[[2, 5, 9]] == pytest.approx([0.25, 0.55, 0.95])
    assert np.isnan(curve.accuracy[0]) and np.isnan(curve.confidence[0])
    assert curve.to_dict()["accuracy"][0] is None
    assert curve.to_dict()["count"][9] == 4


def test_bins_are_right_closed_and_hold_zero_and_one() -> None:
    conf = np.array([0.0, 0.1, 0.3, 0.30001, 1.0])
    curve = reliability_curve(conf, np.ones(5, dtype=bool), n_bins=10)
    # 0.0 and 0.1 in (0, 0.1] (the first bin also holds 0), 0.3 in (0.2, 0.3], 1.0 in the last
    assert curve.count.tolist() == [2, 0, 1, 1, 0, 0, 0, 0, 0, 1]
    assert curve.lower[0] == 0.0 and curve.upper[-1] == 1.0


def test_perfect_calibration_has_zero_ece_and_top_label() -> None:
    probs = np.array([[0.8, 0.2]] * 10)
    labels = np.array([0] * 8 + [1] * 2)
    conf, correct = top_label(probs, labels)
    assert conf.tolist() == [0.8] * 10 and correct.sum() == 8
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


def test_reliability_rejects_bad_input() -> None:
    with pytest.raises(ValidationError, match="values but correct"):
        reliability_curve(np.array([0.5, 0.6]), np.array([True]))
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        reliability_curve(np.array([1.5]), np.array([True]))
    with pytest.raises(ValidationError, match="n_bins"):
        reliability_curve(np.array([0.5]), np.array([True]), n_bins=0)


def test_temperature_scaling_fixes_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (6000, 3))
    truth = softmax(logits)
    labels = (rng.random(6000)[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    overconfident = softmax(3.0 * logits)  # the true temperature is 3
    fit, held = slice(0, 3000), slice(3000, None)
    scaler = TemperatureScaler().fit(overconfident[fit], labels[fit])
    assert scaler.temperature == pytest.approx(3.0, rel=0.15)
    calibrated = scaler.transform(overconfident[held])
    before = expected_calibration_error(*top_label(overconfident[held], labels[held]))
    after = expected_calibration_error(*top_label(calibrated, labels[held]))
    assert before > 0.1 and after < 0.03
    assert (calibrated.argmax(axis=1) == overconfident[held].argmax(axis=1)).all()
    assert calibrated.sum(axis=1) == pytest.approx(np.ones(3000))


def test_temperature_scaling_needs_rows() -> None:
    with pytest.raises(ValidationError, match="held-out rows"):
        TemperatureScaler().fit(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValidationError, match="2-D"):
        TemperatureScaler().fit(np.zeros(3), np.zeros(3))


def test_softmax_is_stable() -> None:
    out = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert out.tolist() == [[1.0, 0.0], [0.5, 0.5]]
