"""Simulated workers: answer a job's open tasks with a given accuracy against known truth.

They go through the same :class:`~loopworks.labeling.jobs.LabelingJobs` calls as a person's
browser (next task, submit), so a simulation exercises leases and quotas for real. On an
automated-labeling job, each time no task is left the next round runs
(:meth:`~loopworks.labeling.autolabel.AutoLabeler.advance`, as the server does after an
answer), until the job completes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loopworks.errors import ConfigurationError, NotFoundError
from loopworks.labeling.jobs import LabelingJobs

__all__ = ["simulate"]


def simulate(jobs: LabelingJobs, job: str, accuracies: Sequence[float], *,
             truth_field: str = "truth", team: str | None = None, seed: int = 0,
             home: str | Path | None = None,
             on_round: Callable[[Any], None] | None = None) -> int:
    """Create workers ``sim-1..n`` (if missing) and let them answer until no task is left.

    Each answer is the item's true label (``truth_field`` in its manifest line) with the
    worker's accuracy, else another label at random. On an automated-labeling job the
    rounds run in between (their models are saved under ``home``), and ``on_round`` gets
    each round's :class:`~loopworks.labeling.autolabel.RoundReport`.

    Returns:
        The number of answers given.
    """
    spec = jobs.job(job)
    if spec.task_type.value not in ("text-classification", "text-classification-multilabel",
                                    "image-classification"):
        raise ConfigurationError(f"simulation answers classification jobs; {job!r} is a "
                                 f"{spec.task_type.value} job", setting="job")
    if not accuracies or any(not 0 <= a <= 1 for a in accuracies):
        raise ConfigurationError("accuracies must be numbers between 0 and 1",
                                 setting="accuracy")
    rng = random.Random(seed)
    workers = []
    for i, _ in enumerate(accuracies, start=1):
        name = f"sim-{i}"
        try:
            jobs.workforce.worker(name)
        except NotFoundError:
            workers.append(jobs.workforce.add_worker(name, teams_=[team or spec.team]))
        else:
            jobs.workforce.add_to_team(name, team or spec.team)
            workers.append(jobs.workforce.worker(name))
    labeler = None
    if spec.auto_label is not None:
        from loopworks.labeling.autolabel import AutoLabeler

        labeler = AutoLabeler(jobs, home=home)
    given = 0
    while True:
        given += _answer_all(jobs, job, spec.labels, list(zip(workers, accuracies, strict=True)),
                             truth_field, rng)
        report = labeler.advance(job) if labeler is not None else None
        if report is None:
            return given
        if on_round is not None:
            on_round(report)


def _answer_all(jobs: LabelingJobs, job: str, labels: list[str], active: list[Any],
                truth_field: str, rng: random.Random) -> int:
    given = 0
    while active:
        still = []
        for worker, accuracy in active:
            task = jobs.next_task(job, worker)
            if task is None:
                continue
            truth = task.data.get(truth_field)
            if isinstance(truth, int) and not isinstance(truth, bool) \
                    and 0 <= truth < len(labels):
                truth = labels[truth]  # a class index, as label_id
            if truth not in labels:
                raise ConfigurationError(
                    f"item {task.item_id} has no known {truth_field!r} among the labels "
                    f"{labels}; simulation needs it in the manifest", setting="truth")
            if rng.random() < accuracy:
                answer = truth
            else:
                answer = rng.choice([label for label in labels if label != truth])
            jobs.submit(job, task.item_id, worker, answer)
            given += 1
            still.append((worker, accuracy))
        active = still
    return given
