"""Agreement measures against textbook values, scikit-learn and the real crowd data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from loopworks.errors import ConfigurationError, InputError, ValidationError
from loopworks.labeling import cohen_kappa, fleiss_kappa, krippendorff_alpha

CROWD = Path(__file__).resolve().parents[3] / "shared" / "data" / "crowd"

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C:
# 4 observers, 12 units, values 1-5, None where an observer did not code the unit.
KRIPPENDORFF_DATA = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def from_counts(table: list[list[int]]) -> pd.DataFrame:
    """Long answers from an items x categories count table (raters numbered per item)."""
    rows = []
    for item, counts in enumerate(table):
        raters = iter(range(sum(counts)))
        rows += [(item, next(raters), category) for category, n in enumerate(counts)
                 for _ in range(n)]
    return pd.DataFrame(rows, columns=["item", "worker", "label"])


def krippendorff_answers() -> pd.DataFrame:
    rows = [(unit, observer, value) for observer, values in KRIPPENDORFF_DATA.items()
            for unit, value in enumerate(values) if value is not None]
    return pd.DataFrame(rows, columns=["item", "worker", "label"])


def test_fleiss_kappa_matches_the_textbook_example() -> None:
    assert fleiss_kappa(from_counts(FLEISS_TABLE)) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_with_varying_raters_ignores_single_answers() -> None:
    table = [[3, 0], [0, 2], [1, 1], [2, 1]]
    # P_i = 1, 1, 0, 1/3; pooled shares 6/10 and 4/10, so P_e = 0.52.
    expected = ((1 + 1 + 0 + 1 / 3) / 4 - 0.52) / (1 - 0.52)
    answers = from_counts(table)
    assert fleiss_kappa(answers) == pytest.approx(expected)
    lonely = pd.DataFrame({"item": [99], "worker": [0], "label": [1]})
    assert fleiss_kappa(pd.concat([answers, lonely])) == pytest.approx(expected)


@pytest.mark.parametrize(("level", "alpha"), [("nominal", 0.743), ("ordinal", 0.815),
                                              ("interval", 0.849), ("ratio", 0.797)])
def test_krippendorff_alpha_matches_krippendorff_2011(level: str, alpha: float) -> None:
    assert krippendorff_alpha(krippendorff_answers(), level=level) == pytest.approx(
        alpha, abs=5e-4)


def test_krippendorff_alpha_treats_empty_labels_as_missing() -> None:
    rows = [(unit, observer, value) for observer, values in KRIPPENDORFF_DATA.items()
            for unit, value in enumerate(values)]
    with_gaps = pd.DataFrame(rows, columns=["unit", "coder", "value"])
    assert with_gaps["value"].isna().sum() == 7
    alpha = krippendorff_alpha(with_gaps, item="unit", worker="coder", label="value")
    assert alpha == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_rejects_bad_levels_and_text_for_numeric_levels() -> None:
    answers = from_counts([[1, 1], [2, 0]]).assign(label=lambda f: f["label"].map(
        {0: "no", 1: "yes"}))
    with pytest.raises(ConfigurationError, match="unknown level"):
        krippendorff_alpha(answers, level="cardinal")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="numeric labels"):
        krippendorff_alpha(answers, level="interval")
    assert krippendorff_alpha(answers) == pytest.approx(krippendorff_alpha(
        from_counts([[1, 1], [2, 0]])))


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.choice(["cat", "dog", "bird"], size=200, p=[0.5, 0.3, 0.2])
    b = np.where(rng.random(200) < 0.6, a, rng.choice(["cat", "dog", "bird"], size=200))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_cohen_kappa_drops_incomplete_pairs_and_reports_undefined() -> None:
    a = ["x", "y", None, "x", "y"]
    b = ["x", "y", "x", np.nan, "x"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(["x", "y", "y"],
                                                                ["x", "y", "x"]))
    assert np.isnan(cohen_kappa(["x", "x"], ["x", "x"]))
    with pytest.raises(InputError, match="equally long"):
        cohen_kappa(["x"], ["x", "y"])
    with pytest.raises(InputError, match="no item"):
        cohen_kappa([None], ["x"])


def test_agreement_input_errors() -> None:
    with pytest.raises(InputError, match="'label'"):
        fleiss_kappa(pd.DataFrame({"item": [1], "worker": [1]}))
    with pytest.raises(InputError, match="no rows"):
        fleiss_kappa(pd.DataFrame({"item": [], "worker": [], "label": []}))
    with pytest.raises(InputError, match="two or more answers"):
        krippendorff_alpha(pd.DataFrame({"item": [1, 2], "worker": [1, 1], "label": [0, 1]}))
    twice = pd.DataFrame({"item": [1, 1], "worker": [7, 7], "label": [0, 1]})
    with pytest.raises(ValidationError, match="more than once"):
        fleiss_kappa(twice)


@pytest.mark.skipif(not CROWD.exists(), reason=f"crowd data not found at {CROWD}")
@pytest.mark.parametrize("name", ["product", "face_sentiment", "dogs", "bluebirds"])
def test_alpha_and_fleiss_agree_on_real_crowd_data(name: str) -> None:
    answers = pd.read_csv(CROWD / name / "answers.csv")
    columns = {"item": "question", "worker": "worker", "label": "answer"}
    kappa = fleiss_kappa(answers, **columns)
    alpha = krippendorff_alpha(answers, **columns)
    # Nominal alpha is Fleiss' kappa with a small-sample correction: close on many items.
    assert 0 < kappa < 1
    assert alpha == pytest.approx(kappa, abs=0.01)
