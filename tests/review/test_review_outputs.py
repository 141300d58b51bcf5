"""Where reviewed labels go besides the output document: a feature group with provenance,
and the flow's webhooks (signed status changes to a real local HTTP server)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pandas as pd
import pytest

from loopworks.featurestore import FeatureStore
from loopworks.labeling.jobs import LabelingJobs
from loopworks.metadata import database_url, open_engine
from loopworks.review.flows import FlowDefinition, HumanReview

from _receiver import Receiver

LABELS = ["negative", "neutral", "positive"]


def _review(home: Path) -> HumanReview:
    engine = open_engine(database_url(home))
    review = HumanReview(engine, LabelingJobs(engine), home=home)
    review.jobs.workforce.add_team("reviewers")
    review.jobs.workforce.add_worker("rita", "reviewer", teams_=["reviewers"])
    review.jobs.workforce.add_worker("rob", "reviewer", teams_=["reviewers"])
    return review


def _answer(review: HumanReview, worker: str, label: str) -> None:
    me = review.jobs.workforce.worker(worker)
    task = review.jobs.next_task("review-check", me)
    assert task is not None
    review.jobs.submit("review-check", task.item_id, me, label)


def test_reviewed_labels_land_in_a_feature_group(tmp_path: Path) -> None:
    home = tmp_path / "home"
    review = _review(home)
    review.create_flow(FlowDefinition("check", "reviewers", LABELS, str(tmp_path / "out"),
                                      task_count=2, feature_group="reviewed_labels",
                                      id_field="review_id"))
    for rid, probs in [("r1", [0.3, 0.4, 0.3]), ("r2", [0.1, 0.3, 0.6])]:
        review.start_human_loop(f"loop-{rid}", "check", {
            "text": f"review {rid}", "review_id": rid,
            "probabilities": dict(zip(LABELS, probs, strict=True))})
    for worker in ["rita", "rob"]:
        _answer(review, worker, "negative")  # r1: both correct the model to negative
    _answer(review, "rita", "positive")
    _answer(review, "rob", "positive")  # r2: both agree with the model
    review.settle("check")
    with FeatureStore(home=home) as store:
        rows = store.query("SELECT * FROM reviewed_labels_latest ORDER BY review_id")
        assert list(rows["review_id"]) == ["r1", "r2"]
        assert list(rows["label"]) == ["negative", "positive"]
        assert list(rows["model_label"]) == ["neutral", "positive"]
        assert list(rows["agrees_with_model"]) == [False, True]
        assert list(rows["reviewers"]) == [2, 2] and rows["reviewer_ids"][0] == "rita,rob"
        assert rows["model_confidence"][0] == 0.4 and list(rows["flow"]) == ["check"] * 2
        record = store.feature_group("reviewed_labels").get_record("r1")
        assert record["label_index"] == 0
        assert isinstance(rows["reviewed_at"][0], pd.Timestamp)


def test_status_changes_go_to_the_webhook_signed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWORKS_WEBHOOK_ALLOW", "127.0.0.1/32")  # the receiver is local
    receiver = Receiver(failures=1)  # the first delivery fails and is retried
    try:
        review = _review(tmp_path / "home")
        review.create_flow(FlowDefinition("check", "reviewers", LABELS, str(tmp_path / "out"),
                                          webhooks=[receiver.url], webhook_secret="s3cret"))
        review.start_human_loop("loop-1", "check", {
            "text": "hmm", "probabilities": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}})
        _answer(review, "rita", "neutral")
        review.settle("check")
        deadline = time.monotonic() + 20
        statuses: list[str] = []
        while time.monotonic() < deadline and not {"InProgress", "Completed"} <= set(statuses):
            time.sleep(0.1)
            bodies = [json.loads(r["body"]) for r in receiver.requests[1:]]  # after the 500
            statuses = [b["status"] for b in bodies if b.get("event") == "human-loop.status"]
        assert "InProgress" in statuses and "Completed" in statuses
        for request in receiver.requests:
            expected = "sha256=" + hmac.new(b"s3cret", request["body"],
                                            hashlib.sha256).hexdigest()
            assert request["headers"]["X-Loopworks-Signature"] == expected
    finally:
        review.jobs.webhooks.close()
        receiver.close()


def test_a_loop_whose_output_cannot_be_written_fails_with_the_reason(tmp_path: Path) -> None:
    blocked = tmp_path / "out"
    review = _review(tmp_path / "home")
    review.create_flow(FlowDefinition("check", "reviewers", LABELS, str(blocked)))
    blocked.rmdir()  # the folder was writable when the flow was made; now it is a file
    blocked.write_text("a file where the output folder should be")
    review.start_human_loop("loop-1", "check", {
        "text": "hmm", "probabilities": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}})
    _answer(review, "rita", "neutral")
    loop = review.describe_human_loop("loop-1", "check")
    assert loop.status.value == "Failed" and loop.failure_code == "InternalError"
    assert "could not write the output document" in loop.failure_reason
    assert loop.result["label"] == "neutral"  # the answer is kept
