"""Labeling: the workforce, and turning crowd answers into labels with agreement measures.

Start with :func:`consolidate` (majority vote, Dawid-Skene, one-coin; GLAD and MACE with
crowd-kit) and :func:`read_answers`.
"""

from __future__ import annotations

from loopworks.labeling.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha
from loopworks.labeling.consolidation import (
    METHODS,
    ConsolidationResult,
    MultilabelResult,
    consolidate,
    consolidate_multilabel,
    read_answers,
)
from loopworks.labeling.workforce import Role, Team, Worker, Workforce

__all__ = [
    "METHODS",
    "ConsolidationResult",
    "MultilabelResult",
    "Role",
    "Team",
    "Worker",
    "Workforce",
    "cohen_kappa",
    "consolidate",
    "consolidate_multilabel",
    "fleiss_kappa",
    "krippendorff_alpha",
    "read_answers",
]
