"""Automated labeling's decisions: sample sizes, the threshold that holds a target accuracy
on unseen items, and uncertainty sampling with and without diversity."""

from __future__ import annotations

import numpy as np
import pytest

from loopworks.errors import ConfigurationError
from loopworks.labeling.activelearning import (
    agreement_needed,
    annotator_accuracy_bound,
    choose_threshold,
    initial_sample_sizes,
    select_for_people,
    wilson_lower_bound,
    z_for,
)


def test_sample_sizes_follow_ground_truth() -> None:
    assert initial_sample_sizes(2000) == (400, 200)  # 20% below 5,000 items
    assert initial_sample_sizes(10_000) == (1000, 1000)  # 10% above
    with pytest.raises(ConfigurationError, match="at least 1250 items"):
        initial_sample_sizes(1249)


def test_wilson_bound_matches_a_hand_computed_value() -> None:
    # 90 of 100 at z = 1.96: the textbook interval is (0.8256, 0.9448).
    assert wilson_lower_bound(90, 100, 1.96) == pytest.approx(0.8256, abs=1e-4)


def calibrated(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A good, calibrated model: confidences mostly high, each outcome right with exactly
    that probability."""
    confidence = 1 / 3 + 2 / 3 * rng.beta(5, 1.2, n)
    return confidence, rng.random(n) < confidence


def test_threshold_holds_the_target_on_held_out_items() -> None:
    rng = np.random.default_rng(0)
    held, machine_share = [], []
    for _ in range(200):  # many validation draws, each checked on fresh items
        conf, correct = calibrated(1000, rng)
        chosen = choose_threshold(conf, correct, target=0.95)
        if chosen.value is None:  # no threshold holds: the machine labels nothing
            continue
        assert chosen.validation_accuracy >= 0.95
        test_conf, test_correct = calibrated(20_000, rng)
        held.append(test_correct[test_conf >= chosen.value].mean())
        machine_share.append((test_conf >= chosen.value).mean())
    assert len(held) >= 180 and np.mean(machine_share) > 0.2  # it does label a good share
    held = np.array(held)
    assert held.mean() >= 0.95  # the machine labels reach the target on unseen items
    assert (held >= 0.94).mean() >= 0.95  # and rarely fall short by much


def test_people_s_mistakes_are_allowed_for_when_their_accuracy_is_known() -> None:
    """Validation labels from people right 90% of the time (their mistakes spread over the
    other classes): judged against them, a model must look 95% right, so the threshold sits
    too high. Told how often people are right, the threshold still holds the target against
    the truth, and labels more."""
    assert agreement_needed(0.95) == 0.95
    assert agreement_needed(0.95, 0.97) == pytest.approx(0.95 * 0.97 + 0.05 * 0.03)
    with pytest.raises(ConfigurationError, match="annotator accuracy"):
        agreement_needed(0.95, 0.5)
    assert annotator_accuracy_bound(0, 0) == 1.0
    bound = annotator_accuracy_bound(270, 300)
    assert 0.9 < bound < 0.93 and bound == pytest.approx(1 - wilson_lower_bound(30, 300, 1.645))
    rng = np.random.default_rng(1)
    held: dict[str, list[float]] = {"as right": [], "allowed for": []}
    share: dict[str, list[float]] = {"as right": [], "allowed for": []}
    for _ in range(100):
        conf, model_right = calibrated(1000, rng)
        people_right = rng.random(1000) < 0.9
        # Both right: they agree. One wrong: they disagree. Both wrong: the same wrong
        # answer half the time (three classes, mistakes spread evenly).
        agree = np.where(model_right, people_right,
                         ~people_right & (rng.random(1000) < 0.5))
        test_conf, test_correct = calibrated(20_000, rng)
        for how, q in (("as right", 1.0), ("allowed for", 0.9)):
            chosen = choose_threshold(conf, agree, target=0.95, annotator_accuracy=q)
            if chosen.value is None:
                held[how].append(1.0)
                share[how].append(0.0)
                continue
            above = test_conf >= chosen.value
            held[how].append(test_correct[above].mean())
            share[how].append(above.mean())
    assert np.mean(held["allowed for"]) >= 0.95 and np.mean(held["as right"]) >= 0.97
    assert (np.array(held["allowed for"]) >= 0.94).mean() >= 0.95
    assert np.mean(share["allowed for"]) > np.mean(share["as right"]) + 0.1
    # Items judged against a known answer get no allowance: they must reach the target.
    conf, model_right = calibrated(1000, rng)
    strict = choose_threshold(conf, model_right, 0.95)
    assert choose_threshold(conf, model_right, 0.95, annotator_accuracy=0.9,
                            exact=np.ones(1000, bool)) == strict
    lenient = choose_threshold(conf, model_right, 0.95, annotator_accuracy=0.9)
    half = choose_threshold(conf, model_right, 0.95, annotator_accuracy=0.9,
                            exact=np.arange(1000) % 2 == 0)
    assert lenient.validation_items > half.validation_items > strict.validation_items


def test_assurance_sets_how_far_below_the_measured_accuracy_the_bound_sits() -> None:
    assert z_for(0.95) == pytest.approx(1.645, abs=1e-3) and z_for(0.5) == 0.0
    with pytest.raises(ConfigurationError, match="assurance"):
        z_for(1.0)
    conf = np.linspace(0.5, 1.0, 400)
    correct = np.random.default_rng(3).random(400) < conf
    raw = choose_threshold(conf, correct, 0.9, z=0.0)
    sure = choose_threshold(conf, correct, 0.9)
    assert raw.lower_bound == raw.validation_accuracy >= 0.9  # as measured, no margin
    assert sure.value is not None and raw.value is not None and sure.value > raw.value


def test_threshold_cuts_between_values_and_refuses_when_nothing_holds() -> None:
    conf = np.array([0.99] * 30 + [0.9] * 30 + [0.6] * 40)
    correct = np.array([True] * 30 + [True] * 29 + [False] + [True] * 20 + [False] * 20)
    chosen = choose_threshold(conf, correct, target=0.9)
    assert chosen.value == 0.9 and chosen.validation_items == 60
    assert choose_threshold(conf, np.zeros(100, bool), target=0.9).value is None
    assert choose_threshold(conf[:10], correct[:10], target=0.5).value is None  # too few


def test_uncertain_items_go_to_people_first_and_diversity_spreads_them() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.5, 0.5, 0.0],
                      [0.7, 0.2, 0.1], [0.34, 0.33, 0.33]])
    assert select_for_people(probs, 2).tolist() == [2, 4]
    rng = np.random.default_rng(1)
    # 200 near-duplicates of one uncertain item, and 20 other uncertain items elsewhere.
    features = np.vstack([rng.normal(0, 0.01, (200, 5)), rng.normal(5, 3, (20, 5))])
    uncertain = np.r_[np.full(200, 0.01), np.full(20, 0.05)]
    probs = np.c_[0.5 + uncertain / 2, 0.5 - uncertain / 2]
    plain = select_for_people(probs, 10)
    assert (plain < 200).all()  # all from the duplicate heap
    spread = select_for_people(probs, 10, features=features, diversity=True, pool_factor=30)
    assert len(set(spread.tolist())) == 10 and (spread >= 200).sum() >= 5
