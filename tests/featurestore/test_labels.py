"""Labels as features: the labeling export and the review write-back land one event schema,
and a relabel is a new event (point-in-time training sets rely on it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopworks.errors import ConfigurationError
from loopworks.featurestore import FeatureStore, LabelEvent, LabelSource, ingest_label_events
from loopworks.featurestore.labels import LABEL_FEATURES, label_events_table
from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.labeling.output import write_output
from loopworks.metadata import database_url, open_engine
from loopworks.review.flows import FlowDefinition, HumanReview

LABELS = ["negative", "neutral", "positive"]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def review(tmp_path: Path):  # noqa: ANN201 - HumanReview, its labeling jobs in .jobs
    home = tmp_path / "home"
    engine = open_engine(database_url(home))
    review = HumanReview(engine, LabelingJobs(engine), home=home)
    workforce = review.jobs.workforce
    workforce.add_team("nlp")
    workforce.add_team("reviewers")
    for name in ("ana", "bob"):
        workforce.add_worker(name, teams_=["nlp"])
    workforce.add_worker("rita", "reviewer", teams_=["reviewers"])
    yield review
    review.jobs.webhooks.close()


def _label_and_export(review: HumanReview, tmp_path: Path, group: str) -> None:
    """Job ``sent``: ana and bob both label r1 negative and r2 positive; export to ``group``."""
    manifest = tmp_path / "input.manifest"
    manifest.write_text("".join(json.dumps({"source": f"review {i}", "review_id": f"r{i}"})
                                + "\n" for i in (1, 2)))
    jobs = review.jobs
    jobs.create_job(JobSpec("sent", "nlp", LABELS, workers_per_item=2), manifest)
    for name in ("ana", "bob"):
        worker = jobs.workforce.worker(name)
        while (task := jobs.next_task("sent", worker)) is not None:
            jobs.submit("sent", task.item_id, worker,
                        "negative" if task.source == "review 1" else "positive")
    write_output(jobs, "sent", tmp_path / "out", feature_group=group, id_field="review_id",
                 home=review.home)


def _review_r1(review: HumanReview, tmp_path: Path, group: str) -> None:
    """Flow ``check``: rita corrects the model's 'neutral' on r1 to 'positive'."""
    review.create_flow(FlowDefinition("check", "reviewers", LABELS, str(tmp_path / "reviews"),
                                      feature_group=group, id_field="review_id"))
    review.start_human_loop("loop-r1", "check", {
        "text": "review 1", "review_id": "r1",
        "probabilities": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}})
    rita = review.jobs.workforce.worker("rita")
    task = review.jobs.next_task("review-check", rita)
    assert task is not None
    review.jobs.submit("review-check", task.item_id, rita, "positive")
    review.settle("check")


def _features(spec) -> list[tuple[str, str]]:  # noqa: ANN001
    skip = {spec.record_id, spec.event_time}
    return [(d.name, d.type_name) for d in spec.definitions if d.name not in skip]


def test_export_and_review_write_back_land_the_same_schema(review: HumanReview,
                                                           tmp_path: Path) -> None:
    _label_and_export(review, tmp_path, "job_labels")
    _review_r1(review, tmp_path, "reviewed_labels")
    with FeatureStore(home=review.home) as store:
        exported = store.feature_group("job_labels")
        reviewed = store.feature_group("reviewed_labels")
        assert _features(exported.spec) == _features(reviewed.spec) \
            == [(d.name, d.type_name) for d in LABEL_FEATURES]
        job = exported.get_record("r1")
        assert (job["source"], job["job"], job["flow"], job["label_index"]) \
            == ("job", "sent", None, 0)
        assert (job["workers"], job["worker_ids"], job["reviewers"]) == (2, "ana,bob", 0)
        assert job["human_annotated"] and job["agrees_with_model"] is None
        flow = reviewed.get_record("r1")
        assert (flow["source"], flow["job"], flow["flow"], flow["human_loop"]) \
            == ("flow", "review-check", "check", "loop-r1")
        assert (flow["reviewers"], flow["reviewer_ids"], flow["workers"]) == (1, "rita", 0)
        assert (flow["model_label"], flow["agrees_with_model"]) == ("neutral", False)


def test_a_review_is_a_newer_event_in_the_group_the_export_made(review: HumanReview,
                                                                tmp_path: Path) -> None:
    _label_and_export(review, tmp_path, "labels")
    _review_r1(review, tmp_path, "labels")  # the same group: its own names are kept
    with FeatureStore(home=review.home) as store:
        group = store.feature_group("labels")
        assert (group.spec.record_id, group.spec.event_time) == ("review_id", "labeled_at")
        history = store.query("SELECT label, source, labeled_at FROM labels "
                              "WHERE review_id = 'r1' ORDER BY labeled_at")
        assert list(history["label"]) == ["negative", "positive"]
        assert list(history["source"]) == ["job", "flow"]
        assert group.get_record("r1")["label"] == "positive"  # the latest event online
        before_review = history["labeled_at"][0] + pd.Timedelta(microseconds=1)
        as_labeled = store.training_set(
            pd.DataFrame({"review_id": ["r1"], "event_time": [before_review]}),
            ["labels:label"])
        assert list(as_labeled["label"]) == ["negative"]  # as it was before the review


def test_a_relabel_is_a_new_event_not_an_update(tmp_path: Path) -> None:
    def event(label: str, when: datetime) -> LabelEvent:
        return LabelEvent("r1", when, label, LABELS.index(label), 0.9, LabelSource.JOB, "sent",
                          annotators=("ana",), agreement=1.0, method="majority-vote")

    with FeatureStore(home=tmp_path / "home") as store:
        for label, when in (("negative", T0), ("positive", T0 + timedelta(days=1))):
            assert ingest_label_events(store, "labels", [event(label, when)],
                                       record_id="review_id") == 1
        history = store.feature_group("labels").history().to_pandas()
        assert sorted(history["label"]) == ["negative", "positive"]
        assert store.feature_group("labels").get_record("r1")["label"] == "positive"
        entity = pd.DataFrame({"review_id": ["r1", "r1"],
                               "event_time": [T0 + timedelta(hours=1), T0 + timedelta(days=2)]})
        as_of = store.training_set(entity, ["labels:label"])
        assert list(as_of["label"]) == ["negative", "positive"]


def test_a_group_made_by_an_earlier_release_gains_the_new_features(tmp_path: Path) -> None:
    old = pd.DataFrame({"review_id": ["r0"], "labeled_at": [T0], "label": ["neutral"],
                        "label_index": [1], "confidence": [0.8], "agreement": [1.0],
                        "workers": [3], "method": ["dawid-skene"], "job": ["sent"],
                        "human_annotated": [True]})
    model = LabelEvent("r1", T0, "positive", 2, 0.97, LabelSource.MODEL, "sent",
                       method="auto-label autolabel-sent:1", model_version="autolabel-sent:1")
    with FeatureStore(home=tmp_path / "home") as store:
        store.create_feature_group("labels", record_id="review_id", event_time="labeled_at",
                                   df=old).ingest(old)
        ingest_label_events(store, "labels", [model], record_id="review_id")
        record = store.feature_group("labels").get_record("r1")
        assert (record["source"], record["model_version"], record["workers"]) \
            == ("model", "autolabel-sent:1", 0)
        assert record["human_annotated"] is False and record["agreement"] is None
        assert store.feature_group("labels").get_record("r0")["source"] is None


def test_a_record_id_may_not_hide_a_label_feature() -> None:
    event = LabelEvent("loop-1", T0, "neutral", 1, 0.5, LabelSource.FLOW, "review-check",
                       human_loop="loop-1")
    keyed_by_loop = label_events_table([event], record_id="human_loop", event_time="at")
    assert keyed_by_loop.column("human_loop").to_pylist() == ["loop-1"]
    with pytest.raises(ConfigurationError, match="cannot use 'label' as their record id"):
        label_events_table([event], record_id="label", event_time="at")
