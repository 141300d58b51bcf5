"""What other services do after a labeling event, registered once where the services are
built (:func:`loopworks.open`).

An answer may complete a human loop (the review service settles it) or close an
automated-labeling round (the round runner starts the next one); a worker finding no task
may find a round that a restart missed. Those services subscribe here, so everyone who
answers through :class:`~loopworks.labeling.jobs.LabelingJobs` (the web pages, the JSON API,
an SDK caller, ``label simulate``) gets the same consequences, and labeling imports neither
of them. A follow-up runs after the answer is committed: one that fails is logged and left
for the next read or answer to retry, never turned into an error for the worker. Webhook
events are not follow-ups: they are written to the outbox inside the answer's own
transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["AfterAnswer", "FollowUps", "WhenNoTask"]

log = logging.getLogger(__name__)

#: Called with the job's name and the answered item's id, after the answer is committed.
AfterAnswer = Callable[[str, int], object]
#: Called with the job's name when a worker asked for a task and none was left for them.
WhenNoTask = Callable[[str], object]


class FollowUps:
    """The registered follow-ups of one :class:`~loopworks.labeling.jobs.LabelingJobs`."""

    def __init__(self) -> None:
        self._after_answer: list[AfterAnswer] = []
        self._when_no_task: list[WhenNoTask] = []

    def after_answer(self, follow_up: AfterAnswer) -> None:
        """Run ``follow_up(job, item_id)`` after every new (not replayed) answer."""
        self._after_answer.append(follow_up)

    def when_no_task(self, follow_up: WhenNoTask) -> None:
        """Run ``follow_up(job)`` whenever a worker asks for a task and gets none."""
        self._when_no_task.append(follow_up)

    def answered(self, job: str, item_id: int) -> None:
        """Run the answer follow-ups (each failure logged, none raised)."""
        for follow_up in self._after_answer:
            try:
                follow_up(job, item_id)
            except Exception:
                log.exception("a follow-up of the answer to item %d of job %r failed; the "
                              "next read or answer retries it", item_id, job)

    def no_task(self, job: str) -> None:
        """Run the no-task follow-ups (each failure logged, none raised)."""
        for follow_up in self._when_no_task:
            try:
                follow_up(job)
            except Exception:
                log.exception("a follow-up of an empty queue in job %r failed", job)
