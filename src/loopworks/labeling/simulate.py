"""Simulated workers: answer a job's open tasks with a given accuracy against known truth.

They go through the same :class:`~loopworks.labeling.jobs.LabelingJobs` calls as a person's
browser (next task, submit), so a simulation exercises leases and quotas for real.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from loopworks.errors import ConfigurationError, NotFoundError
from loopworks.labeling.jobs import LabelingJobs

__all__ = ["simulate"]


def simulate(jobs: LabelingJobs, job: str, accuracies: Sequence[float], *,
             truth_field: str = "truth", team: str | None = None, seed: int = 0) -> int:
    """Create workers ``sim-1..n`` (if missing) and let them answer until no task is left.

    Each answer is the item's true label (``truth_field`` in its manifest line) with the
    worker's accuracy, else another label at random. Returns the number of answers given.
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
    given = 0
    active = list(zip(workers, accuracies, strict=True))
    while active:
        still = []
        for worker, accuracy in active:
            task = jobs.next_task(job, worker)
            if task is None:
                continue
            truth = task.data.get(truth_field)
            if isinstance(truth, int) and not isinstance(truth, bool) \
                    and 0 <= truth < len(spec.labels):
                truth = spec.labels[truth]  # a class index, as label_id
            if truth not in spec.labels:
                raise ConfigurationError(
                    f"item {task.item_id} has no known {truth_field!r} among the labels "
                    f"{spec.labels}; simulation needs it in the manifest", setting="truth")
            if rng.random() < accuracy:
                answer = truth
            else:
                answer = rng.choice([label for label in spec.labels if label != truth])
            jobs.submit(job, task.item_id, worker, answer)
            given += 1
            still.append((worker, accuracy))
        active = still
    return given
