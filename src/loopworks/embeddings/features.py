"""Sentence embeddings as a scikit-learn transformer, so a classifier or a sampler can use
them in place of (or beside) TF-IDF features.

The transformer keeps only the model's name; the model itself is loaded on first use and
never pickled, so a fitted pipeline saves small and loads anywhere the model is available.

Vectors are cached per model and text in the process (up to :data:`CACHE_ITEMS` texts):
automated labeling scores the same items round after round, and a round must not spend
minutes encoding what the previous one already did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from loopworks.embeddings.model import EmbeddingModel

__all__ = ["CACHE_ITEMS", "SentenceEmbeddingFeatures"]

#: Most texts whose vectors the process keeps (384 float32 each: ~150 MB at 100,000).
CACHE_ITEMS = 100_000
_cache: dict[tuple[str | None, str], np.ndarray] = {}
_models: dict[tuple[str | None, int | None], EmbeddingModel] = {}


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
        """Encode ``texts`` (an empty text gets the vector of an empty sentence); texts
        encoded before in this process come from the cache."""
        texts = [str(t) for t in texts]
        missing = list(dict.fromkeys(t for t in texts if (self.model, t) not in _cache))
        if missing:
            key = (self.model, self.threads)
            if key not in _models:
                _models[key] = EmbeddingModel(self.model, threads=self.threads)
            vectors = _models[key].encode(missing, batch_size=self.batch_size)
            if len(_cache) + len(missing) > CACHE_ITEMS:
                _cache.clear()
            _cache.update(((self.model, t), v) for t, v in zip(missing, vectors, strict=True))
            found = dict(zip(missing, vectors, strict=True))
        else:
            found = {}
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[t] if t in found else _cache[(self.model, t)] for t in texts])
