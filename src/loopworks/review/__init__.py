"""Human review of model predictions: flow definitions, activation conditions, human loops."""

from loopworks.review.conditions import ActivationConditions, Evaluation

__all__ = ["ActivationConditions", "Evaluation"]
