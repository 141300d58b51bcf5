"""Labeling jobs: items from a manifest, leased to workers, answered, consolidated.

:class:`LabelingJobs` is one object put together from three parts, one module each:
:mod:`~loopworks.labeling.lifecycle` (creating, settling, stopping jobs),
:mod:`~loopworks.labeling.leases` (handing out tasks) and
:mod:`~loopworks.labeling.answers` (recording answers).
"""

from __future__ import annotations

from loopworks.labeling.answers import AnswerReceipt, Answers
from loopworks.labeling.manifest import GOLD_FIELD, gold_label, read_manifest, read_table_items
from loopworks.labeling.spec import JobSpec, JobStatus, Task
from loopworks.labeling.tasktypes import TaskType

__all__ = ["GOLD_FIELD", "AnswerReceipt", "JobSpec", "JobStatus", "LabelingJobs", "Task",
           "TaskType", "gold_label", "read_manifest", "read_table_items"]


class LabelingJobs(Answers):
    """Labeling jobs in the metadata database: their lifecycle, leases and answers."""
