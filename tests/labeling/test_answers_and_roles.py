"""What the outside probe of the labeling domain found (issue 12): item ids scoped to their
job, idempotent answers, roles on tasks and validated job names. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopworks.errors import ConfigurationError, ConflictError, NotFoundError, PermissionDenied
from loopworks.errors import ValidationError as LwValidationError
from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.labeling.output import write_output


@pytest.fixture
def jobs(labeling_jobs: LabelingJobs) -> LabelingJobs:
    labeling_jobs.create_job(JobSpec("a", "nlp", ["neg", "pos"]), ["a1", "a2"])
    labeling_jobs.create_job(JobSpec("b", "nlp", ["yes", "no"]), ["b1", "b2"])
    return labeling_jobs


def test_an_answer_through_another_job_is_not_found_and_changes_nothing(
        jobs: LabelingJobs, tmp_path: Path) -> None:
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    held_a = jobs.next_task("a", ana)
    held_b = jobs.next_task("b", ana)
    assert held_a is not None and held_b is not None
    # B's item through A's URL: 404, and nothing is recorded in either job.
    with pytest.raises(NotFoundError, match="has no task"):
        jobs.submit("a", held_b.item_id, ana, "neg")
    with pytest.raises(NotFoundError, match="has no task"):
        jobs.skip("a", held_b.item_id, ana)
    assert jobs.job("a").counts["answers"] == 0 and jobs.job("b").counts["answers"] == 0
    # B's lease is intact: B's own answer lands under B, with B's labels.
    jobs.submit("b", held_b.item_id, ana, "yes")
    jobs.submit("a", held_a.item_id, ana, "pos")
    summary = write_output(jobs, "b", tmp_path / "b")
    rows = [line for line in Path(summary["manifest"]).read_text().splitlines()
            if '"yes"' in line]
    assert len(rows) == 1
    assert [a["answer"] for a in jobs.answers("a")] == ["pos"]
    assert [a["answer"] for a in jobs.answers("b")] == ["yes"]


def test_an_idempotency_key_answers_a_retry_with_the_stored_result(jobs: LabelingJobs) -> None:
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    task = jobs.next_task("a", ana)
    assert task is not None
    first = jobs.record_answer("a", task.item_id, ana, "neg", then_next=True,
                               idempotency_key="k-1")
    assert not first.replayed and first.next is not None
    # The reply was lost; the client sends the same request again.
    again = jobs.record_answer("a", task.item_id, ana, "neg", then_next=True,
                               idempotency_key="k-1")
    assert again.replayed and again.next is not None
    assert again.next.item_id == first.next.item_id
    assert jobs.job("a").counts["answers"] == 1
    # Without the key the retry is a conflict, as before.
    with pytest.raises(ConflictError):
        jobs.submit("a", task.item_id, ana, "neg")
    # The key is not reusable for another task.
    with pytest.raises(LwValidationError, match="already used"):
        jobs.submit("a", first.next.item_id, ana, "pos", idempotency_key="k-1")
    with pytest.raises(LwValidationError, match="printable"):
        jobs.submit("a", first.next.item_id, ana, "pos", idempotency_key="has space")
    # A failed first attempt stores nothing: the retry fails the same way.
    with pytest.raises(ConfigurationError):
        jobs.submit("a", first.next.item_id, ana, "not-a-label", idempotency_key="k-2")
    jobs.submit("a", first.next.item_id, ana, "pos", idempotency_key="k-2")
    assert jobs.job("a").counts["answers"] == 2


def test_labeling_jobs_are_for_annotators_and_flows_for_reviewers(jobs: LabelingJobs) -> None:
    rita = jobs.workforce.add_worker("rita", "reviewer", teams_=["nlp"])
    ana = jobs.workforce.add_worker("ana", teams_=["nlp"])
    lead = jobs.workforce.add_worker("lead", "admin")
    with pytest.raises(PermissionDenied, match="is for annotators"):
        jobs.next_task("a", rita)
    assert [s.name for s in jobs.jobs_for(rita)] == []
    jobs.create_job(JobSpec("review-x", "nlp", ["neg", "pos"], streaming=True,
                            roles=["reviewer"]), ["r1"])
    with pytest.raises(PermissionDenied, match="is for reviewers"):
        jobs.next_task("review-x", ana)
    assert "review-x" not in [s.name for s in jobs.jobs_for(ana)]
    assert jobs.next_task("review-x", rita) is not None
    assert jobs.next_task("a", lead) is not None  # admins take any job's tasks
    jobs.create_job(JobSpec("both", "nlp", ["neg", "pos"], roles=["annotator", "reviewer"]),
                    ["x", "y"])
    assert jobs.next_task("both", rita) is not None and jobs.next_task("both", ana) is not None
    with pytest.raises(ConfigurationError, match="roles"):
        JobSpec("odd", "nlp", ["neg"], roles=["admin"])


@pytest.mark.parametrize("name", ["../../../etc", "<img src=x onerror=alert(1)>", "a b",
                                  "-lead", "x" * 64, "x" * 5000, "", "tab\tname", "ünï"])
def test_job_names_are_validated_like_other_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid job name"):
        JobSpec(name, "nlp", ["neg", "pos"])


def test_durations_are_bounded() -> None:
    with pytest.raises(ConfigurationError, match="time limit"):
        JobSpec("j", "nlp", ["neg"], time_limit_seconds=10**30)
    with pytest.raises(ConfigurationError, match="availability lifetime"):
        JobSpec("j", "nlp", ["neg"], availability_lifetime_seconds=10**30)
