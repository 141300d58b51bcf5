"""Adaptive redundancy: more answers only while an item's agreement is below the target."""

from __future__ import annotations

import pytest

from loopworks.labeling.jobs import JobSpec, JobStatus, LabelingJobs

LABELS = ["neg", "pos"]


@pytest.fixture
def labeling(labeling_jobs: LabelingJobs) -> LabelingJobs:
    return labeling_jobs

def test_stops_at_the_target_or_at_max_workers(labeling: LabelingJobs) -> None:
    labeling.create_job(JobSpec("ad", "nlp", LABELS, workers_per_item=2, adaptive={
        "target_confidence": 0.9, "max_workers": 4}), ["agreed", "disputed"])
    plan = {"agreed": ["pos", "pos"], "disputed": ["pos", "neg", "pos", "neg"]}
    workers = [labeling.workforce.add_worker(f"w{i}", teams_=["nlp"]) for i in range(5)]
    asked: dict[str, int] = {"agreed": 0, "disputed": 0}
    for worker in workers:
        while (task := labeling.next_task("ad", worker)) is not None:
            labeling.submit("ad", task.item_id, worker, plan[task.source][asked[task.source]])
            asked[task.source] += 1
    # "agreed": 2 of 2 agree (1.0 >= 0.9) -> labeled after the usual two answers.
    # "disputed": 1/2, 2/3, 2/4 stay below 0.9 -> asked again until max_workers (4).
    assert asked == {"agreed": 2, "disputed": 4}
    spec = labeling.job("ad")
    assert spec.status is JobStatus.COMPLETED and spec.counts["labeled"] == 2
    assert spec.counts["answers"] == 6


def test_adaptive_keeps_asking_only_new_workers(labeling: LabelingJobs) -> None:
    labeling.create_job(JobSpec("ad", "nlp", LABELS, workers_per_item=1, adaptive={
        "target_confidence": 0.75, "max_workers": 3}), ["one"])
    ana = labeling.workforce.add_worker("ana", teams_=["nlp"])
    bob = labeling.workforce.add_worker("bob", teams_=["nlp"])
    cy = labeling.workforce.add_worker("cy", teams_=["nlp"])
    task = labeling.next_task("ad", ana)
    labeling.submit("ad", task.item_id, ana, "pos")  # one answer: 1.0 -> done already
    assert labeling.job("ad").status is JobStatus.COMPLETED
    labeling.create_job(JobSpec("ad2", "nlp", LABELS, workers_per_item=2, adaptive={
        "target_confidence": 0.75, "max_workers": 3}), ["two"])
    for worker, answer in ((ana, "pos"), (bob, "neg")):
        task = labeling.next_task("ad2", worker)
        labeling.submit("ad2", task.item_id, worker, answer)
    assert labeling.next_task("ad2", ana) is None  # wants a third answer, not ana's again
    task = labeling.next_task("ad2", cy)
    assert task is not None
    labeling.submit("ad2", task.item_id, cy, "pos")  # 2/3 < 0.75 but max_workers reached
    assert labeling.job("ad2").status is JobStatus.COMPLETED


def test_many_workers_at_once_respect_max_workers_and_the_target(
        labeling: LabelingJobs) -> None:
    import json
    import random
    import threading
    import time
    from collections import Counter

    n_items, n_workers = 30, 10
    labeling.create_job(JobSpec("busy", "nlp", LABELS, workers_per_item=2, adaptive={
        "target_confidence": 0.9, "max_workers": 4}), [f"t{i}" for i in range(n_items)])
    workers = [labeling.workforce.add_worker(f"c{i}", teams_=["nlp"]) for i in range(n_workers)]
    errors: list[BaseException] = []

    def work(worker, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while labeling.job("busy").status is JobStatus.IN_PROGRESS:
                task = labeling.next_task("busy", worker)
                if task is None:  # nothing free now; an item may want another answer later
                    time.sleep(0.005)
                    continue
                # item i is easy when i is even (everyone says pos), disputed otherwise
                easy = int(task.source[1:]) % 2 == 0
                answer = "pos" if easy or rng.random() < 0.5 else "neg"
                labeling.submit("busy", task.item_id, worker, answer)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w, i)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    given = labeling.answers("busy")
    assert len({(a["item_id"], a["worker"]) for a in given}) == len(given)
    per_item: dict[int, list[str]] = {}
    for a in given:
        per_item.setdefault(a["item"], []).append(json.dumps(a["answer"]))
    assert len(per_item) == n_items
    for item, votes in per_item.items():
        share = Counter(votes).most_common(1)[0][1] / len(votes)
        assert 2 <= len(votes) <= 4, (item, votes)
        if len(votes) < 4:  # stopped early only because the target was reached
            assert share >= 0.9, (item, votes)
        if item % 2 == 0:
            assert len(votes) == 2  # unanimous items never needed more
    spec = labeling.job("busy")
    assert spec.status is JobStatus.COMPLETED and spec.counts["labeled"] == n_items
