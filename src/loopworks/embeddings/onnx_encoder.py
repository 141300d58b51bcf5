"""Sentence vectors from the exported ONNX graph: the transformer run by ONNX Runtime or
OpenVINO, pooling and L2 norm in NumPy.

Encoding needs the engine (onnxruntime or openvino), tokenizers and NumPy only; PyTorch is
imported just once per model and home, to export it (:mod:`loopworks.embeddings.onnx_export`).
OpenVINO reads the same fused graph ONNX Runtime writes: in fp32 it ran as fast in a whole
job on the machine we measured (~10% faster once warmed up over the batch shapes), and with
``bf16`` it uses bfloat16 products where the CPU has them (AVX-512 BF16, AMX), falling back to
fp32 where it does not: 1.8× its fp32 there. Texts are tokenized
once, sorted by length and cut into batches by a budget of padded tokens (plus an optional
cap on texts), so a batch of long reviews holds few of them and a batch of short ones many;
vectors come back in input order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loopworks.embeddings.model import EMBEDDINGS_INSTALL, ModelSource, resolve_model
from loopworks.embeddings.onnx_export import OnnxArtifacts, ensure_onnx_model
from loopworks.errors import ConfigurationError, MissingDependencyError

__all__ = ["DEFAULT_MAX_TOKENS", "ENGINES", "MAX_BATCH", "OnnxEncoder", "open_openvino",
           "open_session", "padded_batches", "token_budget_batches"]

#: What runs the exported graph.
ENGINES = ("onnxruntime", "openvino")

#: Padded tokens per forward pass by default (e.g. 16 texts of 64 pieces): small batches keep
#: the activations in the cache; on 2 cores 1,024 ran fp32 50% faster than 8,192.
DEFAULT_MAX_TOKENS = 1024
#: Most texts per forward pass when only the token budget limits a batch.
MAX_BATCH = 256


class OnnxEncoder:
    """Normalised sentence vectors from the ONNX export of a sentence-transformers model.

    Args:
        source: A :class:`ModelSource`, or a spec for :func:`resolve_model`.
        quantized: Use the int8 dynamically quantised graph (smaller, usually faster on the
            CPU, cosine about 0.99 to the fp32 vectors) instead of the fp32 one (ONNX
            Runtime only: the graph uses its own int8 operators).
        threads: Intra-op threads (``None``: the cores this process may use).
        home: loopworks home folder holding the export cache; ``None`` resolves settings.
        allow_network: For a hub name given as a string: may it be downloaded (to export).
        engine: ``onnxruntime`` or ``openvino`` (see :data:`ENGINES`).
        bf16: OpenVINO only: bfloat16 matrix products where the CPU has them (cosine
            ≥ 0.999 to fp32 on real reviews; about 1.8× faster on an AVX-512 BF16 CPU).

    Raises:
        MissingDependencyError: The engine is not installed (or PyTorch, for the export).
        ConfigurationError: The model cannot be loaded, its pooling is not supported, or
            the options do not go together.
    """

    def __init__(self, source: ModelSource | str | None = None, *, quantized: bool = False,
                 threads: int | None = None, home: str | os.PathLike[str] | None = None,
                 allow_network: bool = False, engine: str = "onnxruntime",
                 bf16: bool = False) -> None:
        if engine not in ENGINES:
            raise ConfigurationError(f"unknown engine {engine!r}; choose one of "
                                     f"{', '.join(ENGINES)}", setting="engine")
        if quantized and engine != "onnxruntime":
            raise ConfigurationError("the int8 graph runs on ONNX Runtime only (it uses its "
                                     "own int8 operators)", setting="engine")
        if bf16 and engine != "openvino":
            raise ConfigurationError("bf16 is OpenVINO's option", setting="engine")
        if not isinstance(source, ModelSource):
            source = resolve_model(source, allow_network=allow_network)
        if threads is not None and threads < 1:
            raise ConfigurationError(f"threads must be at least 1, not {threads}",
                                     setting="threads")
        _engine(engine)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.source = source
        self.quantized = quantized
        self.engine = engine
        self.bf16 = bf16
        self.threads = threads or _cpus()
        self.artifacts: OnnxArtifacts = ensure_onnx_model(source, quantized=quantized, home=home)
        manifest = self.artifacts.manifest
        self.dimension = int(manifest["dimension"])
        self.max_seq_length = int(manifest["max_seq_length"])
        self._pooling: list[str] = list(manifest["pooling"])
        self._inputs: list[str] = list(manifest["inputs"])

        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(self.artifacts.tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self._run: Callable[[dict[str, np.ndarray]], np.ndarray]
        if engine == "openvino":
            self._run = open_openvino(self.artifacts.model_path, self.threads, bf16=bf16)
        else:
            session = open_session(self.artifacts.model_path, self.threads)
            self._run = lambda feed: session.run(None, feed)[0]

    @property
    def runtime(self) -> str:
        """``onnx``, ``onnx-int8``, ``openvino`` or ``openvino-bf16``."""
        if self.engine == "openvino":
            return "openvino-bf16" if self.bf16 else "openvino"
        return "onnx-int8" if self.quantized else "onnx"

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None,
               max_tokens: int | None = None) -> np.ndarray:
        """Normalised sentence vectors, ``(len(texts), dimension)`` float32, in input order.

        Args:
            texts: The texts.
            batch_size: Most texts per forward pass (``None``: up to :data:`MAX_BATCH`).
            max_tokens: Most padded tokens per forward pass (``None``:
                :data:`DEFAULT_MAX_TOKENS`); a single longer text still gets its own batch.
        """
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not len(texts):
            return out
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        for rows, feed in padded_batches(encodings, self._inputs,
                                         batch_size=batch_size or MAX_BATCH,
                                         max_tokens=max_tokens or DEFAULT_MAX_TOKENS):
            hidden = self._run({name: feed[name] for name in self._inputs})
            out[rows] = _normalise(_pool(hidden, feed["attention_mask"], self._pooling))
        return out


def open_session(model: Path | bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session: all graph optimisations, ``threads`` intra-op threads,
    one op at a time (the cores go to each op's threads, not to running ops side by side)."""
    ort = _engine("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no advisory lines on stderr
    given = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(given, options, providers=["CPUExecutionProvider"])


def open_openvino(model: Path, threads: int, *, bf16: bool = False
                  ) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """The graph compiled by OpenVINO for the CPU: ``threads`` threads in one stream (one
    request at a time, its ops spread over the threads), not pinned to cores (worker
    processes would otherwise pin to the same ones), fp32 products unless ``bf16`` (OpenVINO
    would pick bf16 by itself on CPUs that have it). Returns a function from the feed to the
    first output; calls from several threads take turns."""
    ov = _engine("openvino")
    compiled = ov.Core().compile_model(str(model), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        "INFERENCE_NUM_THREADS": max(1, int(threads)), "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False})
    request = compiled.create_infer_request()
    output = compiled.output(0)
    lock = threading.Lock()

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with lock:
            return np.array(request.infer(feed)[output])

    return run


def padded_batches(encodings: Sequence[Any], inputs: Sequence[str], *, batch_size: int,
                   max_tokens: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Row indices and the int64 feed of each batch of tokenizer ``encodings`` (see
    :func:`token_budget_batches`), padded on the right to the batch's longest row.

    ``attention_mask`` is always in the feed (pooling needs it), the other ``inputs`` as the
    graph names them.
    """
    lengths = [len(e.ids) for e in encodings]
    names = dict.fromkeys([*inputs, "attention_mask"])
    for rows in token_budget_batches(lengths, batch_size=batch_size, max_tokens=max_tokens):
        width = max(lengths[i] for i in rows)
        feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in names}
        for j, i in enumerate(rows):
            n = lengths[i]
            feed["input_ids"][j, :n] = encodings[i].ids
            feed["attention_mask"][j, :n] = encodings[i].attention_mask
            if "token_type_ids" in feed:
                feed["token_type_ids"][j, :n] = encodings[i].type_ids
        yield rows, feed


def token_budget_batches(lengths: Sequence[int], *, batch_size: int, max_tokens: int
                         ) -> list[np.ndarray]:
    """Row indices per batch: rows sorted by length, each batch's ``rows × longest`` at most
    ``max_tokens`` (a longer single row alone) and at most ``batch_size`` rows."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order):
            batches.append(order[start:end])
        else:
            count = end + 1 - start  # rows if the next (longer or equal) one joins
            if count > batch_size or count * lengths[order[end]] > max_tokens:
                batches.append(order[start:end])
                start = end
    return batches


def _pool(hidden: np.ndarray, mask: np.ndarray, modes: list[str]) -> np.ndarray:
    """The model's pooling of the last hidden states (sentence-transformers' order)."""
    weights = mask[..., None].astype(hidden.dtype)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(np.where(weights > 0, hidden, -1e9).max(axis=1))
        elif mode == "mean":
            parts.append((hidden * weights).sum(axis=1) / counts)
        else:  # mean_sqrt_len_tokens
            parts.append((hidden * weights).sum(axis=1) / np.sqrt(counts))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def _engine(module: str) -> Any:
    """Import an engine's module, or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        what = "the OpenVINO encoder" if module == "openvino" else "the ONNX Runtime encoder"
        raise MissingDependencyError(module, "embeddings", what, EMBEDDINGS_INSTALL) from None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
