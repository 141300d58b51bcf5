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
