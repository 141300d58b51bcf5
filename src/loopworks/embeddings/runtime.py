"""Which runtime encodes: PyTorch (sentence-transformers) or ONNX Runtime (fp32 or int8).

Both give the same contract, :class:`Encoder`: ``encode(texts, batch_size=...)`` returns
L2-normalised float32 vectors in input order. PyTorch stays the default; the ONNX runtimes
export the model once into the home folder and then need neither PyTorch nor transformers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from loopworks.embeddings.model import EmbeddingModel, ModelSource
from loopworks.errors import ConfigurationError

__all__ = ["RUNTIMES", "Encoder", "load_encoder"]

#: ``torch`` (sentence-transformers), ``onnx`` (fp32 graph), ``onnx-int8`` (quantised).
RUNTIMES = ("torch", "onnx", "onnx-int8")


class Encoder(Protocol):
    """Texts to normalised sentence vectors."""

    dimension: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """``(len(texts), dimension)`` float32, rows in input order."""
        ...


def load_encoder(source: ModelSource | str | None = None, *, runtime: str = "torch",
                 threads: int | None = None, home: str | os.PathLike[str] | None = None,
                 allow_network: bool = False) -> Encoder:
    """The model ``source`` loaded for ``runtime`` (one of :data:`RUNTIMES`).

    Raises:
        ConfigurationError: An unknown runtime, or the model cannot be loaded.
        MissingDependencyError: The runtime's packages are not installed.
    """
    if runtime == "torch":
        return EmbeddingModel(source, threads=threads, allow_network=allow_network)
    if runtime in ("onnx", "onnx-int8"):
        from loopworks.embeddings.onnx_encoder import OnnxEncoder

        return OnnxEncoder(source, quantized=runtime == "onnx-int8", threads=threads,
                           home=home, allow_network=allow_network)
    raise ConfigurationError(f"unknown embedding runtime {runtime!r}; choose one of "
                             f"{', '.join(RUNTIMES)}", setting="runtime")
