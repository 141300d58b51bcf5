"""Sentence embeddings as a scikit-learn transformer, so a classifier or a sampler can use
them in place of (or beside) TF-IDF features.

The transformer keeps only the model's name; the model itself is loaded on first use and
never pickled, so a fitted pipeline saves small and loads anywhere the model is available.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from loopworks.embeddings.model import EmbeddingModel

__all__ = ["SentenceEmbeddingFeatures"]


class SentenceEmbeddingFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Texts to normalised sentence vectors (``n × dimension`` float32); nothing to fit.

    Args:
        model: ``None`` (offline all-MiniLM-L6-v2), a local folder or a hub name.
        batch_size: Texts per forward pass.
        threads: PyTorch threads while encoding (``None``: PyTorch's default).

    Example:
        ``Pipeline([("embed", SentenceEmbeddingFeatures()), ("clf", LogisticRegression())])``
    """

    def __init__(self, model: str | None = None, batch_size: int = 32,
                 threads: int | None = None) -> None:
        self.model = model
        self.batch_size = batch_size
        self.threads = threads

    def fit(self, texts: Sequence[str], y: Any = None) -> SentenceEmbeddingFeatures:
        """Nothing to learn: the vectors come from the pretrained model."""
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` (an empty text gets the vector of an empty sentence)."""
        loaded = self.__dict__.get("_loaded")
        if loaded is None:
            loaded = EmbeddingModel(self.model, threads=self.threads)
            self.__dict__["_loaded"] = loaded
        return loaded.encode([str(t) for t in texts], batch_size=self.batch_size)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_loaded", None)
        return state
