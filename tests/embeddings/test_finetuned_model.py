"""The fine-tuned encoder as a classifier: it learns from labels, calibrates, saves small
enough and loads to the same predictions; automated labeling can use it (slow)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import needs_torch

TEXTS = ["I love it, perfect fit", "great dress, love the color", "awful, it fell apart",
         "terrible fabric, sent it back", "so comfortable, love it",
         "cheap and ugly, returned it"] * 4
LABELS = np.array([1, 0, 0, 0, 1, 0] * 4)
LABELS[[1, 7, 13, 19]] = 1  # "great dress, love the color" is positive


@needs_torch
def test_fine_tuning_learns_the_labels_and_survives_a_round_trip(tmp_path: Path) -> None:
    from loopworks.errors import ValidationError
    from loopworks.models import ModelCard, ModelRegistry
    from loopworks.models.finetuned import FineTunedModel

    with pytest.raises(ValidationError, match="no training rows"):
        FineTunedModel(["negative", "neutral", "positive"]).fit(TEXTS, LABELS)
    model = FineTunedModel(["negative", "positive"], epochs=4).fit(TEXTS, LABELS)
    unseen = ["dreadful quality, it ripped", "wonderful, I love the fit"]
    assert list(model.predict_proba(unseen).argmax(axis=1)) == [0, 1]
    model.calibrate(TEXTS[:6], LABELS[:6])
    assert model.calibration == "temperature"
    probs = model.predict_proba(unseen)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # Predictions run on the ONNX export of the fine-tuned network; PyTorch agrees.
    assert model.runtime == "onnx" and model._onnx is not None
    many = unseen + TEXTS + [" ".join(TEXTS)]  # mixed lengths, one truncated
    on_onnx = model.predict_proba(many)
    model.runtime = "torch"
    np.testing.assert_allclose(model.predict_proba(many), on_onnx, atol=1e-4)
    model.runtime = "onnx"
    saved = pickle.dumps(model)
    assert len(saved) < 60_000_000  # float16 weights, not the 90 MB float32 checkpoint
    card = ModelRegistry(tmp_path).save(model, "tuned", ModelCard(
        name="tuned", classes=["negative", "positive"], features=model.describe_features()))
    loaded = ModelRegistry(tmp_path).load("tuned", card.version)
    np.testing.assert_allclose(loaded.predict_proba(unseen), probs, atol=1e-3)


@needs_torch
def test_a_fit_continues_from_an_earlier_one_on_its_new_texts(tmp_path: Path) -> None:
    """Warm start: the next round's model starts from the last one's weights (here as the
    registry hands it back) and trains one pass over the texts that one never saw, topped
    up with seen ones to ``warm_budget``; a model of other classes starts afresh."""
    from loopworks.models import ModelCard, ModelRegistry
    from loopworks.models.finetuned import FineTunedModel

    first = FineTunedModel(["negative", "positive"], epochs=4).fit(TEXTS, LABELS)
    assert first.examples == 4 * len(TEXTS) and not first.warm_started
    registry = ModelRegistry(tmp_path)
    registry.save(first, "tuned", ModelCard(name="tuned", classes=["negative", "positive"]))
    earlier = registry.load("tuned")
    more = ["the seams came undone in a week", "flattering cut, I adore it",
            "scratchy and see-through", "my new favourite top"]
    texts, labels = TEXTS + more, np.concatenate([LABELS, [0, 1, 0, 1]])
    warm = FineTunedModel(["negative", "positive"], warm_budget=10).fit(
        texts, labels, start=earlier)
    assert warm.warm_started and warm.examples == 10  # the 4 new texts and 6 seen ones
    assert warm.describe_features()["warm_started"] is True
    unseen = ["dreadful quality, it ripped", "wonderful, I love the fit"]
    assert list(warm.predict_proba(unseen).argmax(axis=1)) == [0, 1]
    again = FineTunedModel(["negative", "positive"], warm_budget=10).fit(
        texts, labels, start=warm)
    assert again.examples == 10  # nothing new: ten seen texts replayed
    other = FineTunedModel(["bad", "good"], epochs=1).fit(texts, labels, start=earlier)
    assert not other.warm_started and other.examples == len(texts)


@needs_torch
@pytest.mark.slow
def test_automated_labeling_with_a_fine_tuned_encoder(tmp_path: Path) -> None:
    """One round of a job whose model is the fine-tuned encoder: machine labels land, and
    they hold the target against the truth."""
    from loopworks.labeling.autolabel import AutoLabeler
    from loopworks.labeling.jobs import JobSpec, LabelingJobs
    from loopworks.labeling.simulate import simulate
    from loopworks.metadata import open_engine
    from loopworks.samples import generate_reviews

    names = ["negative", "neutral", "positive"]
    table = generate_reviews(1300, seed=3, broken=False).to_pandas()
    data = [(text, {"source": text, "truth": names[0] if s <= 2 else names[1] if s == 3
                    else names[2]}) for text, s in zip(table.review_body, table.star_rating,
                                                       strict=True)]
    jobs = LabelingJobs(open_engine(f"sqlite:///{tmp_path / 'meta.db'}"))
    jobs.workforce.add_team("nlp")
    jobs.create_job(JobSpec("tuned", "nlp", names, auto_label={
        "features": "fine-tuned", "batch_size": 400}), data)
    simulate(jobs, "tuned", [0.98], seed=1, home=tmp_path)
    rounds = AutoLabeler(jobs, home=tmp_path).rounds("tuned")
    assert rounds and sum(r.machine_labels for r in rounds) > 300
    from loopworks.models import ModelRegistry

    cards = ModelRegistry(tmp_path).list(all_versions=True)
    assert [c.features["warm_started"] for c in cards] == [False] + [True] * (len(cards) - 1)
    assert jobs.job("tuned").counts["held"] == 0
    from loopworks.labeling.output import write_output

    summary = write_output(jobs, "tuned", tmp_path / "out")
    lines = [json.loads(x) for x in Path(summary["manifest"]).read_text().splitlines()]
    machine = [x for x in lines if x["tuned-metadata"]["human-annotated"] == "no"]
    right = sum(x["tuned-metadata"]["class-name"] == x["truth"] for x in machine)
    assert right / len(machine) >= 0.93, (right, len(machine))
    assert machine[0]["tuned-metadata"]["loopworks"]["model-version"].startswith("autolabel-tuned:")
