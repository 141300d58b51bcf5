"""Skipping a task and coming back to the one already held (what the annotator page does)."""

from __future__ import annotations

import pytest

from loopworks.errors import ConflictError
from loopworks.labeling.jobs import JobSpec, LabelingJobs


@pytest.fixture
def jobs(labeling_jobs: LabelingJobs) -> LabelingJobs:
    return labeling_jobs

def test_skip_returns_item_to_others_never_to_the_skipper(jobs: LabelingJobs) -> None:
    jobs.create_job(JobSpec("sent", "nlp", ["neg", "pos"]), ["first", "second"])
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    bob = jobs.workforce.add_worker("bob", teams_=["nlp"])
    assert jobs.current_task("sent", ana) is None
    task = jobs.next_task("sent", ana)
    assert task is not None and task.source == "first"
    held = jobs.current_task("sent", ana)
    assert held is not None and held.item_id == task.item_id  # a reload shows the same item
    jobs.skip("sent", task.item_id, ana)
    with pytest.raises(ConflictError, match="no live task"):
        jobs.skip("sent", task.item_id, ana)
    after = jobs.next_task("sent", ana)
    assert after is not None and after.source == "second"
    jobs.submit("sent", after.item_id, ana, "pos")
    assert jobs.next_task("sent", ana) is None  # the skipped item never comes back to ana
    again = jobs.next_task("sent", bob)
    assert again is not None and again.source == "first"  # but it is there for bob


def test_streaming_job_stays_open_and_items_can_be_withdrawn(jobs: LabelingJobs) -> None:
    jobs.create_job(JobSpec("flow", "nlp", ["neg", "pos"], streaming=True), ["a"])
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    task = jobs.next_task("flow", ana)
    assert task is not None
    jobs.submit("flow", task.item_id, ana, "pos")
    assert jobs.job("flow").status.value == "InProgress"  # all labeled, still open
    ids = jobs.append_items("flow", [("b", {"source": "b"}), ("c", {"source": "c"})])
    assert len(ids) == 2 and ids[0] < ids[1]
    held = jobs.next_task("flow", ana)
    assert held is not None and held.item_id == ids[0]
    assert jobs.fail_items("flow", ids, "the loop was stopped") == 2
    assert jobs.fail_items("flow", ids, "again") == 0
    assert jobs.next_task("flow", ana) is None
    with pytest.raises(ConflictError):
        jobs.submit("flow", held.item_id, ana, "neg")  # its lease ended with the item
    counts = jobs.job("flow").counts
    assert counts["failed"] == 2 and counts["labeled"] == 1
