"""Flow definitions and human loops on SQLite and PostgreSQL: conditions decide, people answer
through the labeling machinery, loops complete, expire, stop, and write A2I-shaped output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopworks.errors import ConfigurationError, ConflictError, InputError, PermissionDenied
from loopworks.labeling.jobs import LabelingJobs
from loopworks.metadata import open_engine
from loopworks.review.flows import FlowDefinition, HumanReview, LoopStatus

LABELS = ["negative", "neutral", "positive"]
LOW_CONFIDENCE = {"Conditions": [{
    "ConditionType": "ClassificationConfidenceCheck",
    "ConditionParameters": {"ClassificationLabel": "*", "ConfidenceLessThan": 0.7}}]}


@pytest.fixture
def review(metadata_url: str) -> HumanReview:
    engine = open_engine(metadata_url)
    review = HumanReview(engine, LabelingJobs(engine))
    review.jobs.workforce.add_team("reviewers")
    review.jobs.workforce.add_team("others")
    review.jobs.workforce.add_worker("rita", "reviewer", teams_=["reviewers"])
    review.jobs.workforce.add_worker("rob", "reviewer", teams_=["reviewers"])
    review.jobs.workforce.add_worker("oscar", "reviewer", teams_=["others"])
    return review


def flow(tmp_path: Path, **changes) -> FlowDefinition:
    settings = {"name": "sentiment-check", "team": "reviewers", "labels": LABELS,
                "output": str(tmp_path / "a2i-output"), "title": "Check the sentiment",
                "task_count": 2, "activation_conditions": LOW_CONFIDENCE}
    return FlowDefinition(**{**settings, **changes})


def content(text: str, *probs: float) -> dict:
    return {"text": text, "probabilities": dict(zip(LABELS, probs, strict=True)),
            "review_id": text[:8]}


def answer_all(review: HumanReview, *answers: tuple[str, str]) -> None:
    for worker, label in answers:
        me = review.jobs.workforce.worker(worker)
        task = review.jobs.next_task("review-sentiment-check", me)
        assert task is not None, f"{worker} found no task"
        review.jobs.submit("review-sentiment-check", task.item_id, me, label)


def test_conditions_decide_and_starting_is_idempotent(review: HumanReview,
                                                      tmp_path: Path) -> None:
    review.create_flow(flow(tmp_path))
    sure = review.start_human_loop("loop-1", "sentiment-check",
                                   content("Love it", 0.02, 0.03, 0.95))
    assert not sure.started and sure.loop is None and "no activation condition" in sure.reason
    unsure = review.start_human_loop("loop-2", "sentiment-check",
                                     content("It is okay I guess", 0.3, 0.45, 0.25))
    assert unsure.started and unsure.loop.status is LoopStatus.IN_PROGRESS
    assert unsure.conditions_fired == ["Conditions[0] ClassificationConfidenceCheck"]
    again = review.start_human_loop("loop-2", "sentiment-check",
                                     content("It is okay I guess", 0.3, 0.45, 0.25))
    assert again.started and again.reason == "exists"
    with pytest.raises(ConflictError, match="other input content"):
        review.start_human_loop("loop-2", "sentiment-check", content("else", 0.3, 0.4, 0.3))
    assert review.jobs.job("review-sentiment-check").counts["items"] == 1  # one task only
    assert review.summary("sentiment-check")["human_share"] == 0.5
    repeat = review.start_human_loop("loop-1", "sentiment-check",
                                     content("Love it", 0.02, 0.03, 0.95))
    assert not repeat.started and "evaluated before" in repeat.reason
    assert review.summary("sentiment-check")["evaluated"] == 2  # repeats are not counted
    with pytest.raises(ConflictError, match="evaluated before with other content"):
        review.start_human_loop("loop-1", "sentiment-check", content("Other", 0.1, 0.1, 0.8))
    with pytest.raises(InputError, match="probabilities"):
        review.start_human_loop("loop-3", "sentiment-check", {"text": "no model output"})
    with pytest.raises(ConfigurationError, match="human loop name"):
        review.start_human_loop("Bad Name!", "sentiment-check", content("x", 0.3, 0.4, 0.3))


def test_bad_flows_are_refused_and_create_nothing(review: HumanReview, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"Conditions\[0\].ConditionType"):
        review.create_flow(flow(tmp_path, activation_conditions={"Conditions": [
            {"ConditionType": "Vibes", "ConditionParameters": {}}]}))
    with pytest.raises(ConfigurationError, match="task count"):
        flow(tmp_path, task_count=0)
    assert review.flows() == []
    review.create_flow(flow(tmp_path))
    with pytest.raises(ConflictError, match="already exists"):
        review.create_flow(flow(tmp_path))


def test_reviewers_complete_a_loop_and_the_output_is_written(review: HumanReview,
                                                             tmp_path: Path) -> None:
    review.create_flow(flow(tmp_path))
    review.start_human_loop("loop-1", "sentiment-check",
                            content("Not bad, not great", 0.35, 0.4, 0.25))
    oscar = review.jobs.workforce.worker("oscar")
    with pytest.raises(PermissionDenied):  # another team never sees the flow's tasks
        review.jobs.next_task("review-sentiment-check", oscar)
    answer_all(review, ("rita", "neutral"))
    assert review.describe_human_loop("loop-1", "sentiment-check").status \
        is LoopStatus.IN_PROGRESS  # task count 2: one answer is not enough
    answer_all(review, ("rob", "negative"))
    loop = review.describe_human_loop("loop-1", "sentiment-check")
    assert loop.status is LoopStatus.COMPLETED
    # A tie between the reviewers goes to the model's label when it is among them.
    assert loop.result["label"] == "neutral" and loop.result["confidence"] == 0.5
    assert loop.result["agreesWithModel"] is True
    path = Path(loop.output_uri)
    assert path.name == "output.json" and path.parent.name == "loop-1"
    assert path.relative_to(tmp_path / "a2i-output").parts[0] == "sentiment-check"
    assert len(path.relative_to(tmp_path / "a2i-output").parts) == 9  # flow/Y/M/D/h/m/s/loop/
    document = json.loads(path.read_text())
    assert document["humanLoopName"] == "loop-1"
    assert document["flowDefinitionArn"].endswith("flow-definition/sentiment-check")
    assert document["inputContent"]["review_id"] == "Not bad,"
    assert [a["workerId"] for a in document["humanAnswers"]] == ["rita", "rob"]
    assert {"answerContent", "acceptanceTime", "submissionTime", "timeSpentInSeconds"} <= \
        set(document["humanAnswers"][0])
    assert document["loopworks"]["activationConditionsFired"] == [
        "Conditions[0] ClassificationConfidenceCheck"]
    assert document["loopworks"]["consolidatedAnswer"]["label"] == "neutral"
    conditions = document["humanTaskActivationConditionResults"]["Conditions"]
    assert conditions[0]["ConditionType"] == "ClassificationConfidenceCheck"
    assert conditions[0]["EvaluationResult"] is True
    summary = review.summary("sentiment-check")
    assert summary["by_status"]["Completed"] == 1
    assert summary["model_accuracy_on_reviewed"] == 1.0


def test_loops_expire_stop_and_delete(review: HumanReview, tmp_path: Path) -> None:
    review.create_flow(flow(tmp_path, availability_lifetime_seconds=60, task_count=1))
    for name in ["old", "stop-me", "done"]:
        review.start_human_loop(name, "sentiment-check", content(name, 0.4, 0.3, 0.3))
    answer_all(review, ("rita", "negative"))  # answers "old": first in the queue
    with pytest.raises(ConflictError, match="only Failed, Completed or Stopped"):
        review.delete_human_loop("stop-me", "sentiment-check")
    stopped = review.stop_human_loop("stop-me", "sentiment-check")
    assert stopped.status is LoopStatus.STOPPED
    with pytest.raises(ConflictError, match="only loops in progress"):
        review.stop_human_loop("stop-me", "sentiment-check")
    later = datetime.now(UTC) + timedelta(seconds=120)
    assert review.settle("sentiment-check", now=later)["expired"] == 1
    expired = review.describe_human_loop("done", "sentiment-check")
    assert expired.status is LoopStatus.FAILED and expired.failure_code == "Expired"
    rob = review.jobs.workforce.worker("rob")
    assert review.jobs.next_task("review-sentiment-check", rob) is None  # nothing left
    assert review.describe_human_loop("old", "sentiment-check").status is LoopStatus.COMPLETED
    for name in ["old", "stop-me", "done"]:
        review.delete_human_loop(name, "sentiment-check")
    assert review.list_human_loops("sentiment-check")[0] == []


def test_list_filters_and_pages(review: HumanReview, tmp_path: Path) -> None:
    review.create_flow(flow(tmp_path, activation_conditions=None, task_count=1))
    results = review.start_human_loops("sentiment-check", [
        (f"loop-{i}", content(f"review {i}", 0.1, 0.1, 0.8)) for i in range(7)])
    assert all(r.started for r in results)  # no conditions: everything goes to people
    answer_all(review, ("rita", "positive"))
    page, token = review.list_human_loops("sentiment-check", max_results=3)
    names = [loop.name for loop in page]
    while token:
        page, token = review.list_human_loops("sentiment-check", max_results=3,
                                              next_token=token)
        names += [loop.name for loop in page]
    assert names == [f"loop-{i}" for i in range(7)]
    done, _ = review.list_human_loops(status="Completed")
    assert [loop.name for loop in done] == ["loop-0"]
    future, _ = review.list_human_loops(created_after=datetime.now(UTC) + timedelta(hours=1))
    assert future == []
    with pytest.raises(ConfigurationError, match="unknown status"):
        review.list_human_loops(status="Done")


TASK_UI = """<crowd-form>
  <crowd-classifier name="verdict" categories="['keep', 'remove']" header="Keep it?">
    <classification-target>{{ task.input.product.title }}: {{ task.input.comment }}
    </classification-target>
  </crowd-classifier>
</crowd-form>
"""


def test_a_task_ui_takes_any_input_and_its_form_answers(review: HumanReview,
                                                        tmp_path: Path) -> None:
    """A2I's semantics with a human task UI: InputContent is any JSON document (no text or
    probabilities needed), the reviewers' answers are their forms' JSON, and the output
    document carries them as answerContent with the worker's identity."""
    review.create_flow(flow(tmp_path, name="moderation", labels=[], task_ui=TASK_UI,
                            activation_conditions=None))
    document = {"product": {"title": "Lamp", "id": 7}, "comment": "<b>spam</b> link"}
    started = review.start_human_loop("mod-1", "moderation", document)
    assert started.started and started.loop.input_content == document
    for worker, verdict in (("rita", "remove"), ("rob", "remove")):
        me = review.jobs.workforce.worker(worker)
        task = review.jobs.next_task("review-moderation", me)
        assert task.task_type == "custom" and task.data["input"] == document
        with pytest.raises(ConfigurationError):
            review.jobs.submit("review-moderation", task.item_id, me, verdict)  # not a form
        review.jobs.submit("review-moderation", task.item_id, me,
                           {"verdict": {"label": verdict}})
    loop = review.describe_human_loop("mod-1", "moderation")
    assert loop.status is LoopStatus.COMPLETED
    assert loop.result["answer"] == {"verdict": {"label": "remove"}}
    assert loop.result["agreement"] == 1.0 and "modelLabel" not in loop.result
    output = json.loads(Path(loop.output_uri).read_text())
    assert output["inputContent"] == document
    assert [a["answerContent"] for a in output["humanAnswers"]] == \
        [{"verdict": {"label": "remove"}}] * 2
    assert {a["workerMetadata"]["identityData"]["sub"] for a in output["humanAnswers"]} == \
        {"rita", "rob"}
    # With activation conditions, the model's probabilities over the labels are needed.
    review.create_flow(flow(tmp_path, name="moderation-gated", task_ui=TASK_UI))
    with pytest.raises(InputError):
        review.start_human_loop("gated-1", "moderation-gated", document)
    with pytest.raises(ConfigurationError) as caught:
        flow(tmp_path, name="broken-ui", labels=[], task_ui="<p>{{ task.input.x | </p>")
    assert caught.value.fields["setting"] == "task_ui"
