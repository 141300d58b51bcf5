"""Labeling: the workforce, labeling jobs, and turning crowd answers into labels.

Start with :class:`LabelingJobs` (create a job from a :class:`JobSpec`, lease tasks, take
answers) and :func:`write_output` (the augmented manifest); :func:`consolidate` (majority
vote, Dawid-Skene, one-coin; GLAD and MACE with crowd-kit) works on any answers table.
:class:`AutoLabeler` runs the rounds of automated labeling (``JobSpec.auto_label``).
"""

from __future__ import annotations

from loopworks.labeling.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha
from loopworks.labeling.autolabel import AutoLabeler, RoundReport
from loopworks.labeling.consolidation import (
    METHODS,
    ConsolidationResult,
    MultilabelResult,
    consolidate,
    consolidate_multilabel,
    read_answers,
)
from loopworks.labeling.jobs import JobSpec, JobStatus, LabelingJobs, Task
from loopworks.labeling.output import write_output
from loopworks.labeling.tasktypes import TaskType
from loopworks.labeling.workforce import Role, Team, Worker, Workforce

__all__ = [
    "METHODS",
    "AutoLabeler",
    "ConsolidationResult",
    "JobSpec",
    "JobStatus",
    "LabelingJobs",
    "MultilabelResult",
    "Role",
    "RoundReport",
    "Task",
    "TaskType",
    "Team",
    "Worker",
    "Workforce",
    "cohen_kappa",
    "consolidate",
    "consolidate_multilabel",
    "fleiss_kappa",
    "krippendorff_alpha",
    "read_answers",
    "write_output",
]
