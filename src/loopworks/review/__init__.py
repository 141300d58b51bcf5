"""Human review of model predictions: flow definitions, activation conditions, human loops."""

from loopworks.review.conditions import ActivationConditions, Evaluation
from loopworks.review.flows import (
    FailureCode,
    FlowDefinition,
    HumanLoop,
    HumanReview,
    LoopStatus,
    StartResult,
)

__all__ = ["ActivationConditions", "Evaluation", "FailureCode", "FlowDefinition", "HumanLoop",
           "HumanReview", "LoopStatus", "StartResult"]
