"""Automated-labeling rounds off the request path: :class:`AutoLabelRounds`.

An answer that closes a round (no item open, some held) starts the next round on a thread
of its own, so the worker is not kept waiting for a model to train. :func:`loopworks.open`
registers it as a follow-up of every answer and of every empty task queue
(:mod:`loopworks.labeling.followups`), so the server, the pages and SDK callers all get it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopworks.labeling.autolabel import AutoLabeler
    from loopworks.labeling.jobs import LabelingJobs

__all__ = ["PLAIN_JOB_SECONDS", "AutoLabelRounds"]

#: How long a job seen without automated labeling is taken to still have none.
PLAIN_JOB_SECONDS = 30.0

log = logging.getLogger(__name__)


class AutoLabelRounds:
    """Runs automated-labeling rounds off the request path, on one thread of the app's own.

    At most one round per job is queued or running from this process; the round's claim
    (see :meth:`~loopworks.labeling.autolabel.AutoLabeler.advance`) keeps other processes
    from running it twice. A failed round is logged and its claim given back, so the next
    answer or request for a task starts it again. :meth:`close` waits for the running round.

    Args:
        jobs: The labeling jobs.
        home: loopworks home whose model registry keeps the rounds' models.
    """

    def __init__(self, jobs: LabelingJobs, home: str | Path | None) -> None:
        self.jobs = jobs
        self.home = home
        self._labeler: AutoLabeler | None = None
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="loopworks-autolabel")
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._plain: dict[str, float] = {}  # jobs without automated labeling, when seen
        self._closed = False

    @property
    def labeler(self) -> AutoLabeler:
        """The :class:`~loopworks.labeling.autolabel.AutoLabeler` (imported on first use:
        it brings numpy and the models, which most servers never need)."""
        if self._labeler is None:
            from loopworks.labeling.autolabel import AutoLabeler

            self._labeler = AutoLabeler(self.jobs, home=self.home)
        return self._labeler

    def answered(self, job: str, _item_id: int) -> None:
        """Follow-up of an answer: start the job's next round if this answer closed one.

        Most jobs have no automated labeling, and a job's ``auto_label`` never changes:
        such a job is remembered for :data:`PLAIN_JOB_SECONDS` (a job deleted and made
        again under its name with automated labeling is seen after that), so its answers
        cost no query here."""
        seen = self._plain.get(job)
        if seen is not None and time.monotonic() - seen < PLAIN_JOB_SECONDS:
            return
        if not self.start(job) and not self.labeler.uses_auto_label(job):
            self._plain[job] = time.monotonic()

    def running(self, job: str) -> bool:
        """True while a round of the job is queued or running in this process."""
        with self._lock:
            return job in self._active

    def start(self, job: str) -> bool:
        """Queue the job's next round when one is due and none is queued or running here.

        Returns:
            True when a round of the job is queued or running now.
        """
        if self.running(job):
            return True
        if self._closed or not self.labeler.due(job):
            return False
        with self._lock:
            if job in self._active:
                return True
            if self._closed:
                return False
            self._active.add(job)
            try:
                self._executor.submit(self._run, job)
            except RuntimeError:  # shut down meanwhile
                self._active.discard(job)
                return False
        return True

    def _run(self, job: str) -> None:
        """Rounds until none is due: normally one, as a round opens a batch for people."""
        try:
            while (report := self.labeler.advance(job)) is not None:
                log.info("automated-labeling round %d of job %r: %d machine-labeled, %d sent "
                         "to people, %d held left", report.round, job, report.machine_labels,
                         report.sent_to_people, report.held_left)
                moved = report.machine_labels + report.sent_to_people + report.failed
                if not moved or not self.labeler.due(job):
                    break
        except Exception:
            log.exception("automated-labeling round of job %r failed; the next answer or "
                          "request for a task retries it", job)
        finally:
            with self._lock:
                self._active.discard(job)

    def close(self) -> None:
        """Stop taking rounds, drop queued ones (a later request starts them again) and
        wait for the running one to finish."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
