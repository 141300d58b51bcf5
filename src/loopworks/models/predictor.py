"""What review code needs from a model, and an adapter that makes anything fit it.

Human review only needs class names and a function from texts to class probabilities.
:func:`as_predictor` accepts a saved model (or its name), any object with
``predict_proba`` (a scikit-learn classifier, say) or a plain callable, and returns a
:class:`ProbabilityPredictor` that checks what comes back and turns it into
:class:`~loopworks.models.predictions.Predictions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from loopworks.errors import ConfigurationError
from loopworks.models.predictions import Predictions, check_probabilities

__all__ = ["Predictor", "ProbabilityPredictor", "as_predictor"]


@runtime_checkable
class Predictor(Protocol):
    """Anything with class names and a texts-to-probabilities method."""

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in the column order of :meth:`predict_proba`."""
        ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(len(texts), len(classes))`` array of probabilities (rows sum to 1)."""
        ...


class ProbabilityPredictor:
    """A checked predictor around a probability function.

    Args:
        function: ``texts -> (n, k) probabilities``.
        classes: Class names for the ``k`` columns.
        name: What it is, for messages and provenance (model name:version or a label).
        card: The model card when it wraps a saved model.
    """

    def __init__(self, function: Callable[[list[str]], Any], classes: Sequence[str], *,
                 name: str = "callable", card: Any = None) -> None:
        classes = tuple(str(c) for c in classes)
        if len(classes) < 1 or len(set(classes)) != len(classes):
            raise ConfigurationError(f"need distinct class names, got {classes}",
                                     classes=classes)
        self._function = function
        self._classes = classes
        self.name = name
        self.card = card

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in column order."""
        return self._classes

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities for each text, validated (shape, finite, non-negative, sum 1).

        Raises:
            ValidationError: The wrapped function returned something unusable.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self._classes)))
        return check_probabilities(self._function(texts), len(texts), self._classes,
                                   source=self.name)

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Label, confidence and per-class probabilities for each text."""
        return Predictions(self._classes, self.predict_proba(texts))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts)

    def __repr__(self) -> str:
        return f"ProbabilityPredictor({self.name!r}, classes={self._classes})"


def as_predictor(obj: Any, classes: Sequence[str] | None = None, *,
                 home: str | None = None) -> ProbabilityPredictor:
    """Make a :class:`ProbabilityPredictor` out of a model, a model name or a callable.

    Args:
        obj: One of: a saved model's name (``"sentiment"`` or ``"sentiment:2"``), loaded
            from the registry; a :class:`~loopworks.models.SentimentModel`; any object with
            ``predict_proba(texts)`` and ``classes`` (or scikit-learn's ``classes_``); or a
            callable ``texts -> (n, k) probabilities``.
        classes: Class names for the probability columns. Needed for a callable; for a
            model it overrides the model's own (e.g. to name a scikit-learn model's
            integer classes).
        home: loopworks home folder, when ``obj`` is a model name.

    Returns:
        The predictor.

    Raises:
        ConfigurationError: ``obj`` is none of those, or the classes are missing or do not
            match the model's number of classes.
        NotFoundError: No saved model of that name.
    """
    if isinstance(obj, ProbabilityPredictor):
        if classes is not None and tuple(classes) != obj.classes:
            return ProbabilityPredictor(obj.predict_proba, classes, name=obj.name, card=obj.card)
        return obj
    if isinstance(obj, str):
        from loopworks.models.registry import load_model

        obj = load_model(obj, home=home)
    if hasattr(obj, "predict_proba"):
        own = getattr(obj, "classes", None)
        if own is None:
            own = getattr(obj, "classes_", None)
        names = classes if classes is not None else own
        if names is None:
            raise ConfigurationError(
                f"{type(obj).__name__} has no classes or classes_; pass classes=[...]")
        names = tuple(str(c) for c in names)
        if own is not None and len(own) != len(names):
            raise ConfigurationError(f"{len(names)} class names given for a model with "
                                     f"{len(own)} classes", classes=names)
        card = getattr(obj, "card", None)
        label = (f"{card.name}:{card.version}" if card is not None
                 and getattr(card, "name", None) else type(obj).__name__)
        return ProbabilityPredictor(obj.predict_proba, names, name=label, card=card)
    if callable(obj):
        if classes is None:
            raise ConfigurationError("a probability function needs classes=[...] naming its "
                                     "columns")
        label = getattr(obj, "__name__", None) or type(obj).__name__
        return ProbabilityPredictor(obj, classes, name=str(label))
    raise ConfigurationError(
        f"cannot predict with a {type(obj).__name__}: give a model name, a model with "
        "predict_proba, or a function texts -> probabilities")
