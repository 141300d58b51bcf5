"""Activation conditions: A2I's JSON shape, validated on creation, evaluated for any model."""

from __future__ import annotations

import numpy as np
import pytest

from loopworks.errors import ConfigurationError
from loopworks.review.conditions import ActivationConditions, sampling_draw

LABELS = ["negative", "neutral", "positive"]


def check(**params: object) -> dict:
    return {"ConditionType": "ClassificationConfidenceCheck", "ConditionParameters": params}


def test_confidence_check_on_any_or_one_label() -> None:
    probs = np.array([[0.1, 0.2, 0.7], [0.05, 0.05, 0.9], [0.6, 0.3, 0.1]])
    anyone = ActivationConditions({"Conditions": [
        check(ClassificationLabel="*", ConfidenceLessThan=0.8)]}, LABELS)
    assert anyone.evaluate(probs, LABELS).activated.tolist() == [True, False, True]
    positive = ActivationConditions({"Conditions": [
        check(ClassificationLabel="positive", ConfidenceLessThan=0.8)]}, LABELS)
    result = positive.evaluate(probs, LABELS)
    assert result.activated.tolist() == [True, False, False]  # row 2 predicts negative
    assert result.fired[0] == ["Conditions[0] ClassificationConfidenceCheck"]
    assert result.fired[1] == []
    band = ActivationConditions({"Conditions": [check(
        ClassificationLabel="*", ConfidenceGreaterThanEquals=0.6, ConfidenceLessThan=0.9)]})
    assert band.evaluate(probs, LABELS).activated.tolist() == [True, False, True]


def test_margin_entropy_and_nesting() -> None:
    probs = np.array([[0.45, 0.40, 0.15], [0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3]])
    margin = {"ConditionType": "MarginBelow", "ConditionParameters": {"Margin": 0.1}}
    entropy = {"ConditionType": "EntropyAbove", "ConditionParameters": {"Entropy": 0.95}}
    low = check(ClassificationLabel="*", ConfidenceLessThan=0.5)
    assert ActivationConditions({"Conditions": [margin]}).evaluate(
        probs, LABELS).activated.tolist() == [True, False, True]
    # Normalised entropy: the uniform row is exactly 1, the confident row near 0.
    assert ActivationConditions({"Conditions": [entropy]}).evaluate(
        probs, LABELS).activated.tolist() == [False, False, True]
    both = ActivationConditions({"Conditions": [{"And": [margin, entropy]}]})
    assert both.evaluate(probs, LABELS).activated.tolist() == [False, False, True]
    nested = ActivationConditions({"Conditions": [
        {"Or": [{"And": [margin, low]}, entropy]}]})
    result = nested.evaluate(probs, LABELS)
    assert result.activated.tolist() == [True, False, True]
    assert "Conditions[0].Or[0].And[0] MarginBelow" in result.fired[0]
    # Top-level members are independent: any one starts a loop.
    either = ActivationConditions({"Conditions": [entropy, low]})
    assert either.evaluate(probs, LABELS).activated.tolist() == [True, False, True]


def test_sampling_is_deterministic_per_input_and_near_its_rate() -> None:
    sampling = ActivationConditions({"Conditions": [
        {"ConditionType": "Sampling", "ConditionParameters": {"RandomSamplingPercentage": 10}}]})
    contents = [{"text": f"review {i}"} for i in range(5000)]
    probs = np.tile([0.1, 0.1, 0.8], (5000, 1))
    first = sampling.evaluate(probs, LABELS, flow="f", contents=contents).activated
    again = sampling.evaluate(probs, LABELS, flow="f", contents=contents).activated
    assert (first == again).all()
    assert 0.08 < first.mean() < 0.12
    other_flow = sampling.evaluate(probs, LABELS, flow="g", contents=contents).activated
    assert (first != other_flow).any()
    assert sampling_draw("f", {"b": 1, "a": 2}) == sampling_draw("f", {"a": 2, "b": 1})


def test_no_conditions_sends_everything() -> None:
    result = ActivationConditions(None).evaluate(np.array([[0.0, 0.0, 1.0]]), LABELS)
    assert result.activated.tolist() == [True]


@pytest.mark.parametrize(("document", "message"), [
    ({"Conditions": [{"ConditionType": "Nope", "ConditionParameters": {}}]},
     r"Conditions\[0\].ConditionType: 'Nope' is not one of"),
    ({"Conditions": [check(ClassificationLabel="*", ConfidenceLessThan=80)]},
     r"ConfidenceLessThan: must be a number from 0 to 1"),
    ({"Conditions": [check(ClassificationLabel="happy", ConfidenceLessThan=0.5)]},
     r"'happy' is not one of the classes"),
    ({"Conditions": [check(ClassificationLabel="*")]}, "give at least one of"),
    ({"Conditions": [check(ClassificationLabel="*", ConfidenceBelow=0.5)]},
     r"unknown parameters \['ConfidenceBelow'\]"),
    ({"Conditions": [{"Or": [check(ClassificationLabel="*", ConfidenceLessThan=0.5)]}]},
     r"Conditions\[0\].Or: must list at least two"),
    ({"Conditions": [{"Or": [{"And": [{"Or": [1, 2]}, 3]}, 4]}]},
     r"Conditions\[0\].Or\[0\].And\[0\]: And/Or nest at most 2 levels"),
    ({"Conditions": [{"ConditionType": "Sampling",
                      "ConditionParameters": {"RandomSamplingPercentage": 120}}]},
     "from 0 to 100"),
    ({"conditions": []}, 'one key, "Conditions"'),
    ("{not json", "not valid JSON"),
])
def test_bad_documents_are_refused_with_the_path(document, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ActivationConditions(document, LABELS)


def test_results_annotate_every_condition_as_a2i_writes_them() -> None:
    document = {"Conditions": [
        {"ConditionType": "MarginBelow", "ConditionParameters": {"Margin": 0.1}},
        {"Or": [{"ConditionType": "EntropyAbove", "ConditionParameters": {"Entropy": 0.99}},
                {"And": [{"ConditionType": "ClassificationConfidenceCheck",
                          "ConditionParameters": {"ClassificationLabel": "*",
                                                  "ConfidenceLessThan": 0.6}},
                         {"ConditionType": "MarginBelow",
                          "ConditionParameters": {"Margin": 0.5}}]}]}]}
    conditions = ActivationConditions(document)
    evaluation = conditions.evaluate([[0.55, 0.3, 0.15]], ["neg", "neu", "pos"])
    assert evaluation.activated.tolist() == [True]
    results = conditions.results(evaluation.fired[0])["Conditions"]
    assert results[0] == {**document["Conditions"][0], "EvaluationResult": False}
    either = results[1]
    assert either["EvaluationResult"] is True
    assert either["Or"][0]["EvaluationResult"] is False
    both = either["Or"][1]
    assert both["EvaluationResult"] is True
    assert [c["EvaluationResult"] for c in both["And"]] == [True, True]
    assert both["And"][1]["ConditionParameters"] == {"Margin": 0.5}
    assert ActivationConditions(None).results(["(no conditions: always)"]) is None
