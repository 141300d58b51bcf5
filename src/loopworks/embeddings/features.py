"""Sentence embeddings as a scikit-learn transformer, so a classifier or a sampler can use
them in place of (or beside) TF-IDF features.

The transformer keeps only the model's name; the model itself is loaded on first use and
never pickled, so a fitted pipeline saves small and loads anywhere the model is available.

Vectors come from ONNX Runtime by default (``runtime``, see
:mod:`loopworks.embeddings.runtime`): faster on CPUs than PyTorch, cosine ≥ 0.999 to its
vectors. They are cached per model, runtime and text in the process (up to
:data:`CACHE_ITEMS` texts): automated labeling scores the same items round after round,
and a round must not spend minutes encoding what the previous one already did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from loopworks.embeddings.runtime import DEFAULT_RUNTIME, Encoder, check_runtime, load_encoder

__all__ = ["CACHE_ITEMS", "SentenceEmbeddingFeatures"]

#: Most texts whose vectors the process keeps (384 float32 each: ~150 MB at 100,000).
CACHE_ITEMS = 100_000
_cache: dict[tuple[str | None, str, str], np.ndarray] = {}
_models: dict[tuple[str | None, str, int | None], Encoder] = {}


class SentenceEmbeddingFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Texts to normalised sentence vectors (``n × dimension`` float32); nothing to fit.

    Args:
        model: ``None`` (offline all-MiniLM-L6-v2), a local folder or a hub name.
        batch_size: Texts per forward pass.
        threads: Threads while encoding (``None``: the runtime's default).
        runtime: ``onnx`` (the default) or another of
            :data:`~loopworks.embeddings.runtime.RUNTIMES`.

    Example:
        ``Pipeline([("embed", SentenceEmbeddingFeatures()), ("clf", LogisticRegression())])``
    """

    def __init__(self, model: str | None = None, batch_size: int = 32,
                 threads: int | None = None, runtime: str = DEFAULT_RUNTIME) -> None:
        self.model = model
        self.batch_size = batch_size
        self.threads = threads
        self.runtime = runtime

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("runtime", "torch")  # pickled before the runtimes existed
        super().__setstate__(state)

    def fit(self, texts: Sequence[str], y: Any = None) -> SentenceEmbeddingFeatures:
        """Nothing to learn: the vectors come from the pretrained model."""
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``texts`` (an empty text gets the vector of an empty sentence); texts
        encoded before in this process come from the cache."""
        check_runtime(self.runtime)
        texts = [str(t) for t in texts]
        model, runtime = self.model, self.runtime
        missing = list(dict.fromkeys(t for t in texts if (model, runtime, t) not in _cache))
        if missing:
            key = (model, runtime, self.threads)
            if key not in _models:
                _models[key] = load_encoder(model, runtime=runtime, threads=self.threads)
            vectors = _models[key].encode(missing, batch_size=self.batch_size)
            if len(_cache) + len(missing) > CACHE_ITEMS:
                _cache.clear()
            _cache.update(((model, runtime, t), v)
                          for t, v in zip(missing, vectors, strict=True))
            found = dict(zip(missing, vectors, strict=True))
        else:
            found = {}
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[t] if t in found else _cache[(model, runtime, t)]
                         for t in texts])
