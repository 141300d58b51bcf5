"""The baseline sentiment classifier: TF-IDF n-grams, logistic regression, calibrated output.

Word 1-2-grams catch "not great" and "runs small"; character 2-5-grams inside word
boundaries catch spelling variants and word pieces. A multinomial logistic regression on
both gives class probabilities, which a calibrator fitted on held-out rows turns into a
confidence that means what it says (see :mod:`loopworks.models.calibration`).

``+embedding`` adds a BERT-family sentence vector (the ``embeddings`` extra; offline
all-MiniLM-L6-v2 by default) beside the n-grams: it knows words the few labeled rows never
showed, which helps most when people have labeled little.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from loopworks.errors import ConfigurationError, ValidationError
from loopworks.models.calibration import TemperatureScaler
from loopworks.models.predictions import Predictions

__all__ = ["AUTO_LABEL_FEATURES", "CALIBRATION_METHODS", "DEFAULT_CLASSES", "FEATURE_KINDS",
           "SentimentModel", "needs_embeddings_extra"]

#: Class names for label ids 0, 1, 2 (sentiment -1, 0, 1) of the review example.
DEFAULT_CLASSES: tuple[str, ...] = ("negative", "neutral", "positive")
FEATURE_KINDS = ("word+char", "word", "char", "word+char+embedding", "embedding")
#: What an automated-labeling model may read: the kinds above, or ``fine-tuned`` (the
#: encoder itself fine-tuned, :class:`~loopworks.models.finetuned.FineTunedModel`).
AUTO_LABEL_FEATURES = (*FEATURE_KINDS, "fine-tuned")


def needs_embeddings_extra(kind: str) -> bool:
    """True when a model of this kind needs PyTorch and sentence-transformers."""
    return "embedding" in kind or kind == "fine-tuned"
#: Weight of the (unit-length) sentence vector beside the TF-IDF rows (also unit length).
EMBEDDING_WEIGHT = 0.5
#: ``temperature`` is ours (NumPy); ``sigmoid`` and ``isotonic`` are scikit-learn's
#: one-vs-rest calibrators on the frozen, already-fitted model.
CALIBRATION_METHODS = ("temperature", "sigmoid", "isotonic", "none")


class SentimentModel:
    """A text classifier that returns calibrated class probabilities.

    Args:
        classes: Class names; label id ``i`` is ``classes[i]``.
        features: ``word+char`` (default), ``word`` or ``char`` TF-IDF n-grams;
            ``word+char+embedding`` adds sentence embeddings, ``embedding`` uses only them.
        embedding_model: The sentence-embedding model for ``embedding`` features (None:
            offline all-MiniLM-L6-v2; a local folder or a hub name otherwise).
        c: Inverse regularisation strength of the logistic regression.
        max_features: Cap on the vocabulary of each TF-IDF part (keeps memory bounded).
        seed: Random seed (used by the solver and the calibrators).

    Raises:
        ConfigurationError: Fewer than two classes, duplicates, or an unknown feature kind.
    """

    def __init__(self, classes: Sequence[str] = DEFAULT_CLASSES, *, features: str = "word+char",
                 c: float = 4.0, max_features: int = 200_000, seed: int = 0,
                 embedding_model: str | None = None) -> None:
        classes = tuple(str(c) for c in classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ConfigurationError(f"need at least two distinct class names, got {classes}",
                                     classes=classes)
        if features not in FEATURE_KINDS:
            raise ConfigurationError(f"unknown features {features!r}; choose one of "
                                     f"{', '.join(FEATURE_KINDS)}", valid_values=FEATURE_KINDS)
        if c <= 0:
            raise ConfigurationError(f"C must be positive, got {c}")
        self.classes = classes
        self.features = features
        self.c = float(c)
        self.max_features = int(max_features)
        self.seed = int(seed)
        self.embedding_model = embedding_model
        self.estimator: Any = None
        self.calibration = "none"
        self.calibrator: Any = None
        #: The registry card, set when the model is saved or loaded (never pickled).
        self.card: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["card"] = None
        return state

    # ------------------------------------------------------------------ training
    def _pipeline(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        parts: list[tuple[str, Any]] = []
        weights: dict[str, float] = {}
        if "word" in self.features:
            parts.append(("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2,
                                                  sublinear_tf=True, strip_accents="unicode",
                                                  max_features=self.max_features,
                                                  dtype=np.float32)))
        if "char" in self.features:
            parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                                  min_df=2, sublinear_tf=True,
                                                  max_features=self.max_features,
                                                  dtype=np.float32)))
        if "embedding" in self.features:
            from loopworks.embeddings.features import SentenceEmbeddingFeatures

            parts.append(("embedding", SentenceEmbeddingFeatures(self.embedding_model)))
            if len(parts) > 1:
                weights["embedding"] = EMBEDDING_WEIGHT
        return Pipeline([("features", FeatureUnion(parts, transformer_weights=weights or None)),
                         # newton-cg: a few Newton steps; lbfgs needs 5-10x longer here
                         ("classifier", LogisticRegression(C=self.c, solver="newton-cg",
                                                           max_iter=500,
                                                           random_state=self.seed))])

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> SentimentModel:
        """Fit features and classifier (uncalibrated) on training texts and label ids.

        Args:
            texts: Training texts.
            labels: Label ids, ``0 <= id < len(classes)``; every class must occur.

        Returns:
            ``self``.

        Raises:
            ValidationError: A class has no training rows, or lengths differ.
        """
        labels = np.asarray(labels, dtype=np.int64)
        if len(texts) != labels.shape[0]:
            raise ValidationError(f"{len(texts)} texts but {labels.shape[0]} labels")
        counts = np.bincount(labels, minlength=len(self.classes))
        missing = [self.classes[i] for i in np.flatnonzero(counts == 0)]
        if missing:
            raise ValidationError(
                f"class(es) {', '.join(missing)} have no training rows; every class needs "
                "examples (or give --classes without them)", classes=missing)
        self.estimator = self._pipeline().fit(list(texts), labels)
        self.calibration, self.calibrator = "none", None
        return self

    def calibrate(self, texts: Sequence[str], labels: np.ndarray,
                  method: str = "temperature") -> SentimentModel:
        """Fit the confidence calibration on held-out texts (never the training rows).

        Args:
            texts: Held-out texts.
            labels: Their label ids.
            method: ``temperature`` (default; keeps the predicted class), ``sigmoid``,
                ``isotonic`` or ``none``.

        Returns:
            ``self``.

        Raises:
            ConfigurationError: Unknown method.
            ValidationError: The model is not fitted or there are no held-out rows.
        """
        if method not in CALIBRATION_METHODS:
            raise ConfigurationError(f"unknown calibration {method!r}; choose one of "
                                     f"{', '.join(CALIBRATION_METHODS)}",
                                     valid_values=CALIBRATION_METHODS)
        self._check_fitted()
        labels = np.asarray(labels, dtype=np.int64)
        if method == "none":
            self.calibration, self.calibrator = "none", None
            return self
        if len(texts) == 0:
            raise ValidationError("calibration needs held-out rows, got none")
        if method == "temperature":
            scaler = TemperatureScaler().fit(self.estimator.predict_proba(list(texts)), labels)
            self.calibration, self.calibrator = method, scaler
            return self
        try:
            calibrator = _sklearn_calibrator(self.estimator, list(texts), labels, method)
        except ValueError as exc:  # e.g. a class missing from the held-out rows
            raise ValidationError(f"{method} calibration failed on {len(texts)} held-out "
                                  f"rows: {exc}; try --calibration temperature") from None
        self.calibration, self.calibrator = method, calibrator
        return self

    # ---------------------------------------------------------------- prediction
    def predict_proba(self, texts: Sequence[str], *, calibrated: bool = True) -> np.ndarray:
        """Class probabilities for each text.

        Args:
            texts: The texts.
            calibrated: Apply the fitted calibration (default); ``False`` gives the raw
                logistic-regression probabilities.

        Returns:
            A float64 ``(len(texts), len(classes))`` array whose rows sum to 1.

        Raises:
            ValidationError: The model is not fitted.
        """
        self._check_fitted()
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.classes)))
        if calibrated and self.calibration in ("sigmoid", "isotonic"):
            return np.asarray(self.calibrator.predict_proba(texts), dtype=np.float64)
        raw = np.asarray(self.estimator.predict_proba(texts), dtype=np.float64)
        if calibrated and isinstance(self.calibrator, TemperatureScaler):
            return self.calibrator.transform(raw)
        return raw

    def predict_proba_both(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated and uncalibrated probabilities, computing the features only once when
        the calibration allows it (temperature or none).

        Returns:
            ``(calibrated, uncalibrated)``.
        """
        raw = self.predict_proba(texts, calibrated=False)
        if isinstance(self.calibrator, TemperatureScaler):
            return self.calibrator.transform(raw) if len(raw) else raw, raw
        if self.calibration == "none":
            return raw, raw
        return self.predict_proba(texts), raw

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Predicted label, confidence and per-class probabilities for each text.

        Args:
            texts: The texts.

        Returns:
            :class:`~loopworks.models.predictions.Predictions` (calibrated).
        """
        return Predictions(self.classes, self.predict_proba(texts))

    def describe_features(self) -> dict[str, Any]:
        """What the model sees, for the model card."""
        info: dict[str, Any] = {"kind": self.features, "classifier": "LogisticRegression",
                                "C": self.c, "max_features_per_part": self.max_features}
        if self.estimator is not None:
            union = self.estimator.named_steps["features"]
            ngrams = [(name, part) for name, part in union.transformer_list
                      if hasattr(part, "vocabulary_")]
            info["vocabulary"] = {name: len(part.vocabulary_) for name, part in ngrams}
            info["ngrams"] = {name: list(part.ngram_range) for name, part in ngrams}
        if "embedding" in self.features:
            info["embedding"] = {"model": self.embedding_model or "all-MiniLM-L6-v2 (offline)",
                                 "weight": EMBEDDING_WEIGHT if "+" in self.features else 1.0}
        return info

    def _check_fitted(self) -> None:
        if self.estimator is None:
            raise ValidationError("the model is not trained yet; call fit() first")

    def __repr__(self) -> str:
        return (f"SentimentModel(classes={self.classes}, features={self.features!r}, "
                f"calibration={self.calibration!r})")


def _sklearn_calibrator(estimator: Any, texts: list[str], labels: np.ndarray,
                        method: str) -> Any:
    from sklearn.calibration import CalibratedClassifierCV

    try:  # scikit-learn >= 1.6: wrap the fitted model instead of cv="prefit"
        from sklearn.frozen import FrozenEstimator

        calibrated = CalibratedClassifierCV(FrozenEstimator(estimator), method=method)
    except ImportError:  # pragma: no cover - older scikit-learn
        calibrated = CalibratedClassifierCV(estimator, method=method, cv="prefit")
    return calibrated.fit(texts, labels)
