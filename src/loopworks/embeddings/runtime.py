"""Which runtime encodes: PyTorch (sentence-transformers), ONNX Runtime (fp32 or int8) or
OpenVINO (fp32 or bf16) on the exported graph.

All give the same contract, :class:`Encoder`: ``encode(texts, batch_size=...)`` returns
L2-normalised float32 vectors in input order. ONNX Runtime fp32 is the default: the same
vectors as PyTorch (cosine 1.0) from fused CPU kernels, faster on the same cores. OpenVINO
runs the same exported graph (``openvino``: fp32, cosine 1.0, about as fast;
``openvino-bf16``: bfloat16 products where the CPU has them, cosine ≥ 0.999, the fastest).
The exported runtimes export the model once into the model cache (PyTorch is imported for
that step only) and then need neither PyTorch nor transformers; ``torch`` remains for models
the export does not support.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from loopworks.embeddings.model import EmbeddingModel, ModelSource
from loopworks.errors import ConfigurationError

__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "Encoder", "check_runtime", "load_encoder",
           "prepare_runtime"]

#: ``torch`` (sentence-transformers), ``onnx`` (fp32 graph), ``onnx-int8`` (quantised),
#: ``openvino`` (the fp32 graph on OpenVINO), ``openvino-bf16`` (bfloat16 products).
RUNTIMES = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")
DEFAULT_RUNTIME = "onnx"


class Encoder(Protocol):
    """Texts to normalised sentence vectors."""

    dimension: int

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """``(len(texts), dimension)`` float32, rows in input order."""
        ...


def load_encoder(source: ModelSource | str | None = None, *, runtime: str = DEFAULT_RUNTIME,
                 threads: int | None = None, home: str | os.PathLike[str] | None = None,
                 allow_network: bool = False) -> Encoder:
    """The model ``source`` loaded for ``runtime`` (one of :data:`RUNTIMES`).

    Raises:
        ConfigurationError: An unknown runtime, or the model cannot be loaded.
        MissingDependencyError: The runtime's packages are not installed.
    """
    check_runtime(runtime)
    if runtime == "torch":
        return EmbeddingModel(source, threads=threads, allow_network=allow_network)
    from loopworks.embeddings.onnx_encoder import OnnxEncoder

    return OnnxEncoder(source, quantized=runtime == "onnx-int8", threads=threads, home=home,
                       allow_network=allow_network,
                       engine="openvino" if runtime.startswith("openvino") else "onnxruntime",
                       bf16=runtime == "openvino-bf16")


def check_runtime(runtime: str) -> None:
    """Raise :class:`ConfigurationError` naming the choices when ``runtime`` is unknown."""
    if runtime not in RUNTIMES:
        raise ConfigurationError(f"unknown embedding runtime {runtime!r}; choose one of "
                                 f"{', '.join(RUNTIMES)}", setting="runtime")


def prepare_runtime(source: ModelSource, runtime: str,
                    home: str | os.PathLike[str] | None = None) -> None:
    """Do the one-off work of ``runtime`` here, before workers start: the ONNX export (and
    int8 graph) is made once by the caller instead of by every worker at once, and workers
    then load it without importing PyTorch."""
    check_runtime(runtime)
    if runtime != "torch":
        from loopworks.embeddings.onnx_export import ensure_onnx_model

        ensure_onnx_model(source, quantized=runtime == "onnx-int8", home=home)
