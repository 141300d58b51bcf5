"""Predictions files into input contents: loop names, scalar columns, checks."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopworks.errors import InputError
from loopworks.review.batch import loop_name, read_prediction_inputs

LABELS = ["negative", "positive"]
VALID = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")


@pytest.mark.parametrize("prefix, value, expected", [
    ("", "r0001", "r0001"), ("batch-", "42", "batch-42"), ("", "a-b", "a-b")])
def test_clean_ids_are_kept(prefix: str, value: str, expected: str) -> None:
    assert loop_name(prefix, value) == expected


@pytest.mark.parametrize("value", ["R0001", "SKU 12/A", "a--b", "-x-", "é", "x" * 80,
                                   "___", "Ünïcödé review #7"])
def test_other_ids_become_valid_distinct_names(value: str) -> None:
    name = loop_name("", value)
    assert VALID.match(name), name
    assert name != loop_name("", value + "!")  # distinct ids keep distinct names
    assert name == loop_name("", value)  # and the same id always gives the same name


def test_contents_carry_the_scalar_columns_only(tmp_path: Path) -> None:
    table = pa.table({
        "review_id": ["a", "b"], "text": ["good", "bad"],
        "input_ids": [[1, 2], [3]],  # token ids: not a scalar, left out
        "when": pa.array([0, 86_400_000], pa.timestamp("ms")),
        "score": [float("nan"), 1.5], "source": ["web", "app"],
        "prob_negative": [0.2, 0.9], "prob_positive": [0.8, 0.1]})
    pq.write_table(table, tmp_path / "p.parquet")
    read = read_prediction_inputs(str(tmp_path / "p.parquet"), LABELS)
    (name, first), (_, second) = read.inputs
    assert name == "a" and read.naming == "id column 'review_id'"
    assert first == {"review_id": "a", "when": "1970-01-01 00:00:00.000", "score": None,
                     "text": "good", "probabilities": {"negative": 0.2, "positive": 0.8}}
    assert second["score"] == 1.5


def test_probabilities_must_be_complete(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a", "b"], "prob_negative": [0.5, None],
                             "prob_positive": [0.5, 0.5]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"missing, negative or do not sum to 1: rows 1"):
        read_prediction_inputs(str(tmp_path / "p.parquet"), LABELS)


@pytest.fixture
def review(metadata_url: str, tmp_path: Path):
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.metadata import open_engine
    from loopworks.review.flows import FlowDefinition, HumanReview

    engine = open_engine(metadata_url)
    review = HumanReview(engine, LabelingJobs(engine))
    review.jobs.workforce.add_team("reviewers")
    review.create_flow(FlowDefinition("check", "reviewers", LABELS, str(tmp_path / "out"),
                                      activation_conditions={"Conditions": [{
                                          "ConditionType": "MarginBelow",
                                          "ConditionParameters": {"Margin": 0.5}}]}))
    return review


def test_batches_start_the_unsure_and_a_repeat_starts_nothing(review, tmp_path: Path) -> None:
    from loopworks.review.batch import start_from_predictions

    n = 2_500
    p = [0.1 + 0.8 * (i % 10) / 9 for i in range(n)]  # margins 0.8 ... 0 ... 0.8
    pq.write_table(pa.table({"id": [f"x{i}" for i in range(n)],
                             "text": [f"text {i}" for i in range(n)],
                             "prob_negative": [1 - q for q in p], "prob_positive": p}),
                   tmp_path / "p.parquet")
    unsure = sum(abs(2 * q - 1) < 0.5 for q in p)
    seen: list[int] = []
    first = start_from_predictions(review, "check", str(tmp_path / "p.parquet"),
                                   batch_size=1000,
                                   progress=lambda stage, done, total: seen.append(done))
    assert (first.evaluated, first.started, first.existing) == (n, unsure, 0)
    assert seen == [1000, 1000, 500] and first.naming == "id column 'id'"
    again = start_from_predictions(review, "check", str(tmp_path / "p.parquet"))
    assert (again.started, again.existing, again.not_activated) == (0, unsure, n - unsure)
    assert review.jobs.job("review-check").counts["items"] == unsure


def test_one_call_refuses_a_repeated_name(review) -> None:
    from loopworks.errors import ConfigurationError

    content = {"text": "x", "probabilities": {"negative": 0.5, "positive": 0.5}}
    with pytest.raises(ConfigurationError, match="repeated: twice"):
        review.start_human_loops("check", [("twice", content), ("once", content),
                                           ("twice", content)])
    assert review.list_human_loops("check")[0] == []
