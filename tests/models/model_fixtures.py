"""Fixtures for the model tests: processed sample reviews and one trained, saved model.

Not a conftest.py: a second ``conftest`` module would shadow tests/conftest.py for the
``from conftest import ...`` lines of other test folders. Test modules import the fixture
functions they use (the ``name=`` keeps linters quiet about shadowed arguments); each value
is made once per session even though every importing module registers the fixture again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopworks.models import TrainingResult, read_labeled_data, train_model
from loopworks.processing import ProcessingConfig, run_processing_job
from loopworks.samples import generate_reviews, write_reviews

_MADE: dict[str, Any] = {}


def _once(key: str, make: Callable[[], Any]) -> Any:
    if key not in _MADE:
        _MADE[key] = make()
    return _MADE[key]


@pytest.fixture(scope="session", name="processed")
def processed_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 generated reviews through `loopworks process` (80/10/10): the output folder."""

    def make() -> Path:
        root = tmp_path_factory.mktemp("processed")
        raw = root / "reviews.csv"
        write_reviews(generate_reviews(3000, seed=11), raw)
        out = root / "features"
        run_processing_job(ProcessingConfig(inputs=str(raw), out=str(out),
                                            split=(80, 10, 10), workers=1),
                           home=root / "home")
        return out

    return _once("processed", make)


@pytest.fixture(scope="session", name="model_home")
def model_home_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A loopworks home holding the trained `sentiment` model (version 1)."""
    return _once("model_home", lambda: tmp_path_factory.mktemp("model-home"))


@pytest.fixture(scope="session", name="trained")
def trained_fixture(processed: Path, model_home: Path) -> TrainingResult:
    """The baseline trained on the processed sample reviews, saved as `sentiment` v1."""
    return _once("trained", lambda: train_model("sentiment", read_labeled_data(processed),
                                                home=model_home))
