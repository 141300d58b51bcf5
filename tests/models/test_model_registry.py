"""Saving and loading by name: identical probabilities, versions, atomic writes, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import model_home_fixture, processed_fixture, trained_fixture  # noqa: F401

from loopworks.errors import ConfigurationError, InputError, NotFoundError
from loopworks.models import (
    ModelCard,
    ModelRegistry,
    TrainingResult,
    list_models,
    load_model,
    parse_model_ref,
    read_labeled_data,
    save_model,
)


def test_round_trip_gives_identical_probabilities(trained: TrainingResult, processed: Path,
                                                  model_home: Path) -> None:
    texts, _ = read_labeled_data(processed).part("test")
    loaded = load_model("sentiment", home=model_home)
    assert np.array_equal(loaded.predict_proba(texts), trained.model.predict_proba(texts))
    assert np.array_equal(loaded.predict_proba(texts, calibrated=False),
                          trained.model.predict_proba(texts, calibrated=False))
    assert loaded.card.version == 1 and loaded.card.path == model_home / "models/sentiment/1"
    assert sorted(p.name for p in loaded.card.path.iterdir()) == \
        ["model.joblib", "model.json", "reliability.png", "report.json"]


def test_versions_increment_and_latest_is_loaded(trained: TrainingResult) -> None:
    # LOOPWORKS_HOME is a fresh folder per test (tests/conftest.py)
    first = save_model(trained.model, "clf", ModelCard(name="clf", metrics={"note": "a"}))
    second = save_model(trained.model, "clf")
    assert (first.version, second.version) == (1, 2)
    assert ModelRegistry().versions("clf") == [1, 2]
    assert load_model("clf").card.version == 2
    assert load_model("clf", 1).card.metrics == {"note": "a"}
    assert load_model("clf:1").card.version == 1
    assert [(c.name, c.version) for c in list_models()] == [("clf", 2)]
    assert [(c.name, c.version) for c in list_models(all_versions=True)] == \
        [("clf", 1), ("clf", 2)]
    # nothing half-written is left behind; the version folders hold full models
    root = Path(os.environ["LOOPWORKS_HOME"]) / "models" / "clf"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".lock")) == ["1", "2"]
    card = json.loads((root / "2" / "model.json").read_text())
    assert card["classes"] == ["negative", "neutral", "positive"]
    assert len(card["files"]["model_sha256"]) == 64


def test_a_failed_save_leaves_no_version(trained: TrainingResult) -> None:
    def broken(folder: Path) -> None:
        (folder / "partial.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ModelRegistry().save(trained.model, "clf", extra_files=broken)
    assert ModelRegistry().versions("clf") == []
    root = Path(os.environ["LOOPWORKS_HOME"]) / "models" / "clf"
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp")] == []


def test_loading_errors_say_what_exists(trained: TrainingResult) -> None:
    with pytest.raises(NotFoundError, match="no model named 'nope'.*models: none yet"):
        load_model("nope")
    card = save_model(trained.model, "clf")
    with pytest.raises(NotFoundError, match=r"has no version 5 \(versions: 1\)"):
        load_model("clf", 5)
    with pytest.raises(ConfigurationError, match="invalid model name"):
        load_model("../../etc")
    with pytest.raises(ConfigurationError, match="invalid model version"):
        parse_model_ref("clf:latest")
    assert card.path is not None
    (card.path / "model.joblib").write_bytes(b"not the model")
    with pytest.raises(InputError, match="does not match the SHA-256"):
        load_model("clf")


def test_the_card_round_trips_through_json() -> None:
    card = ModelCard(name="m", version=3, classes=["a", "b"], metrics={"test": {"ece": 0.1}})
    again = ModelCard.from_dict({**card.to_dict(), "unknown": 1})
    assert again == card and "path" not in card.to_dict()
