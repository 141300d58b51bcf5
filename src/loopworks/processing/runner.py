"""Processing jobs in the background of a long-running process (the server's Studio).

A :class:`JobRunner` checks a job before it takes it (bad options or inputs raise at once and
nothing is recorded), writes the job's record at once, and runs a few jobs at a time on its
own threads. Progress and the outcome go into the record, which is what a page shows:
nothing is printed, nothing is thrown away. Inside a job, ``config.workers`` > 1 means a pool
of spawned processes, as on the command line.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from loopworks.errors import ConflictError, LoopworksError
from loopworks.processing.config import ProcessingConfig
from loopworks.processing.job import check_processing_job, new_job_report, run_processing_job
from loopworks.processing.report import FileJobStore, JobReport
from loopworks.settings import Settings

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)


class JobRunner:
    """Runs processing jobs on a small pool of threads in this process.

    Building one starts nothing; its threads start with the first job. :meth:`close` stops
    it: jobs still waiting are recorded as failed, a running job stops at its next step.

    Args:
        settings: Where the job records go (``settings.jobs_dir``) and the home a job
            ingests into.
        at_once: Jobs that may run at the same time; the next ones wait (``queued``).
    """

    def __init__(self, settings: Settings, *, at_once: int = 1) -> None:
        self.settings = settings
        self.records = FileJobStore(settings.jobs_dir)
        self._executor = ThreadPoolExecutor(max_workers=at_once,
                                            thread_name_prefix="loopworks-job")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._waiting: dict[str, Future[None]] = {}

    def submit(self, config: ProcessingConfig) -> JobReport:
        """Check a job, record it and start it (or queue it behind the running ones).

        Args:
            config: The job's options.

        Returns:
            The job's record as just saved: status ``queued``; the job's own thread makes it
            ``running`` as it starts.

        Raises:
            LoopworksError: The inputs or the output are unusable (the same checks and
                messages as ``loopworks process``); nothing was recorded.
            ConflictError: The runner is closed (the server is stopping).
        """
        check_processing_job(config)
        report = new_job_report(config)
        report.status = "queued"
        with self._lock:
            if self._stopping.is_set():
                raise ConflictError("the server is stopping and starts no more jobs")
            self.records.save(report)
            future = self._executor.submit(self._run, config, report.job_id)
            self._waiting[report.job_id] = future
        future.add_done_callback(lambda _: self._waiting.pop(report.job_id, None))
        return report

    def close(self) -> None:
        """Start no more jobs, stop the running ones at their next step and wait for them.

        Every job this runner took ends with a final record: ``succeeded``, or ``failed``
        with the reason (the server stopped before or while it ran).
        """
        with self._lock:
            self._stopping.set()
            waiting = dict(self._waiting)
        self._executor.shutdown(wait=True, cancel_futures=True)
        for job_id, future in waiting.items():
            if future.cancelled():
                self._fail(job_id, "the server stopped before the job started; start it again")

    def _run(self, config: ProcessingConfig, job_id: str) -> None:
        if self._stopping.is_set():
            self._fail(job_id, "the server stopped before the job started; start it again")
            return
        try:
            run_processing_job(config, home=self.settings.home, job_id=job_id,
                               progress=self._stop_when_closing)
        except LoopworksError as exc:  # the record says what went wrong, for the job's page
            log.info("processing job %s failed: %s", job_id, exc)
        except Exception:
            log.exception("processing job %s failed", job_id)

    def _stop_when_closing(self, stage: str, advance: int, total: int) -> None:
        if self._stopping.is_set():
            raise LoopworksError("the server stopped while the job ran; start it again",
                                 stage=stage)

    def _fail(self, job_id: str, message: str) -> None:
        report = self.records.get(job_id)
        report.status, report.error = "failed", message
        report.finished_at = datetime.now(UTC).isoformat()
        self.records.save(report)
