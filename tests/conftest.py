"""Shared fixtures: sample data made here, the real data under ../shared/data when present."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopworks.samples import generate_reviews, write_reviews

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_REVIEWS = SHARED / "reviews" / "womens_clothing_ecommerce_reviews.csv"
ROBERTA = SHARED / "tokenizers" / "roberta-base"
EVENT_TIME = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def needs_shared(path: Path) -> pytest.MarkDecorator:
    """Skip, with the reason, when the real data beside the project is missing."""
    return pytest.mark.skipif(not path.exists(), reason=f"real data not found at {path}")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own LOOPWORKS_HOME; environment changes are undone after it."""
    saved = dict(os.environ)
    monkeypatch.setenv("LOOPWORKS_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 generated reviews with a few broken rows, as CSV."""
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    write_reviews(generate_reviews(3000, seed=7), path)
    return path
