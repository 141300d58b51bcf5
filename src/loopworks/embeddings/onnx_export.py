"""Exporting a sentence-transformers encoder to ONNX once, and keeping it in the home folder.

The transformer (word pieces in, last hidden states out) is exported with PyTorch's
TorchScript exporter; pooling and L2 normalisation stay outside the graph (NumPy, see
:mod:`loopworks.embeddings.onnx_encoder`) as the model's own modules say.

Fusion. A BERT-family encoder is traced with its plain ("eager") attention, not PyTorch's
``scaled_dot_product_attention``: ONNX Runtime's transformer optimizer recognises the plain
pattern and fuses each layer into its CPU kernels (``Attention`` with the Q, K and V
projections in one MatMul, ``SkipLayerNormalization``, ``BiasGelu``, and
``EmbedLayerNormalization`` for the embeddings). The fused graph computes the same vectors
(cosine 1.0 to the unfused one) about a third faster on a CPU; the SDPA trace matches no
fusion pattern. Other architectures keep the unfused graph (the manifest says which).

The export is kept under ``<model_cache>/onnx/<model-id>/`` (the ``model_cache`` setting,
by default ``<home>/models``):

- ``model.onnx``: the fp32 graph; ``model.int8.onnx``: its dynamically quantised twin (made
  the first time it is asked for);
- ``tokenizer.json``: the model's fast tokenizer, so encoding needs neither PyTorch nor
  transformers;
- ``encoder.json``: the manifest (dimension, pooling, inputs, maximum length) with the size
  and SHA-256 of every file. It is written last: a cache is used only when every file it
  names is there with that size and digest, so a partial or corrupt file is rebuilt.

Every file is written to a temporary name and renamed into place, and exports hold a file
lock, so processes starting together export once and never read a half-written file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopworks.embeddings.model import EMBEDDINGS_INSTALL, EmbeddingModel, ModelSource
from loopworks.errors import ConfigurationError, MissingDependencyError
from loopworks.files import atomic_write

__all__ = ["FORMAT", "INPUT_NAMES", "OnnxArtifacts", "ensure_onnx_model", "export_transformer",
           "onnx_cache_dir"]

#: Bump when the export changes: older caches are then rebuilt, not reused.
FORMAT = 3
MANIFEST = "encoder.json"
FP32, INT8, TOKENIZER = "model.onnx", "model.int8.onnx", "tokenizer.json"
_OPSET = 17
#: Tokenizer outputs a BERT-family graph may take, in the order they are fed.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_FEED_FORWARD = re.compile(r"layer\.(\d+)/(intermediate|output)/dense/")
_POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
_LEGACY_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                   "pooling_mode_mean_tokens": "mean",
                   "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens"}


@dataclass(frozen=True)
class OnnxArtifacts:
    """A checked export in the cache: its folder, manifest and the graph to load."""

    folder: Path
    manifest: dict[str, Any]
    model_path: Path
    tokenizer_path: Path


def onnx_cache_dir(source: ModelSource, home: str | os.PathLike[str] | None = None) -> Path:
    """``<model_cache>/onnx/<model-id>`` (the ``model_cache`` setting, by default
    ``<home>/models``): the id is the model's name plus a digest of where it comes from and,
    for a local folder, of its weight files' sizes and times (a model saved again in the same
    folder gets a new export)."""
    from loopworks.settings import load_settings

    settings = load_settings(home=home)
    root = Path(settings.model_cache).expanduser() if settings.model_cache \
        else settings.home / "models"
    key = [source.location, str(FORMAT)]
    folder = Path(source.location)
    if source.local and folder.is_dir():
        for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            stat = weights.stat()
            key.append(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-.") or "model"
    return root / "onnx" / f"{slug}-{digest}"


def ensure_onnx_model(source: ModelSource, *, quantized: bool = False,
                      home: str | os.PathLike[str] | None = None) -> OnnxArtifacts:
    """The cached export of ``source`` (exported now when missing, partial or corrupt).

    Args:
        source: The model (see :func:`loopworks.embeddings.resolve_model`).
        quantized: Also make (if needed) and return the int8 graph.
        home: loopworks home folder; ``None`` resolves settings.

    Raises:
        MissingDependencyError: onnx/onnxruntime (or PyTorch, for an export) is missing.
        ConfigurationError: The model cannot be loaded or its pooling is not supported.
    """
    import filelock

    folder = onnx_cache_dir(source, home)
    wanted = [FP32, TOKENIZER] + ([INT8] if quantized else [])
    manifest = _valid_manifest(folder, wanted)
    if manifest is None:
        folder.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(folder / ".lock")):
            manifest = _valid_manifest(folder, [FP32, TOKENIZER])
            if manifest is None:
                manifest = _export(source, folder)
            if quantized and _valid_manifest(folder, wanted) is None:
                manifest = _quantize(folder, manifest)
    return OnnxArtifacts(folder, manifest, folder / (INT8 if quantized else FP32),
                         folder / TOKENIZER)


def _valid_manifest(folder: Path, files: list[str]) -> dict[str, Any] | None:
    """The manifest when it is of this format and every one of ``files`` matches it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    for name in files:
        expected = manifest.get("files", {}).get(name)
        path = folder / name
        try:
            if not expected or path.stat().st_size != expected["size"] \
                    or _sha256(path) != expected["sha256"]:
                return None
        except OSError:
            return None
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, "embeddings", "the ONNX Runtime encoder",
                                     EMBEDDINGS_INSTALL) from None


def _export(source: ModelSource, folder: Path) -> dict[str, Any]:
    """Export the transformer and tokenizer of ``source`` into ``folder``; the manifest."""
    _require("onnx", "onnx")
    loaded = EmbeddingModel(source)  # PyTorch and sentence-transformers, for this step only
    st_model = loaded.module
    transformer = st_model[0]
    backbone = getattr(transformer, "auto_model", None) or transformer.model
    pooling = _pooling_modes(st_model)
    backend = getattr(loaded.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigurationError(f"model {source.name!r} has no fast tokenizer, which the "
                                 "ONNX encoder needs; use runtime='torch'", setting="model")
    sample = loaded.features(["A short one.", "A somewhat longer sentence, for the trace."])
    inputs = [name for name in INPUT_NAMES if name in sample]
    graph, fused = export_transformer(backbone, sample, "last_hidden_state")
    tokenizer = backend.to_str().encode()
    manifest = {
        "format": FORMAT, "name": source.name, "location": source.location,
        "dimension": loaded.dimension, "max_seq_length": loaded.max_seq_length,
        "pooling": pooling, "inputs": inputs, "output": "last_hidden_state", "fused": fused,
        "files": {FP32: _entry(graph), TOKENIZER: _entry(tokenizer)},
    }
    atomic_write(folder / FP32, graph)
    atomic_write(folder / TOKENIZER, tokenizer)
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2))
    return manifest


def _pooling_modes(st_model: Any) -> list[str]:
    """The pooling modes of the model's Pooling module, in its concatenation order.

    sentence-transformers 5 says ``pooling_mode: "mean"`` (or a list); older versions, and
    the model folders they saved, say ``pooling_mode_mean_tokens: true`` and so on.
    """
    pooler = next((m for m in st_model if type(m).__name__ == "Pooling"), None)
    if pooler is None:
        raise ConfigurationError("the model has no Pooling module; the ONNX encoder supports "
                                 "sentence-transformers models with one", setting="model")
    config = pooler.get_config_dict()
    given = config.get("pooling_mode")
    if given is None:
        modes = [mode for key, mode in _LEGACY_POOLING.items() if config.get(key)]
        unknown = [k for k, v in config.items() if k.startswith("pooling_mode_") and v
                   and k not in _LEGACY_POOLING]
    else:
        modes = [given] if isinstance(given, str) else list(given)
        unknown = [m for m in modes if m not in _POOLING_MODES]
    if not modes or unknown or config.get("include_prompt") is False:
        raise ConfigurationError(f"pooling {config} is not supported by the ONNX encoder "
                                 "(cls, max, mean and mean_sqrt_len_tokens are); use "
                                 "runtime='torch'", setting="model")
    return modes


def _trace(backbone: Any, tensors: list[Any], names: Sequence[str], output: str) -> bytes:
    """The ONNX bytes of ``backbone``'s ``output``, batch and sequence axes dynamic."""
    import torch

    class Hidden(torch.nn.Module):  # type: ignore[misc]
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return getattr(self.model(**dict(zip(names, args, strict=True))), output)

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated and that traced shapes are
        # constants where they are not (the graph is checked against PyTorch in the tests).
        warnings.simplefilter("ignore")
        # The TorchScript exporter writes to a binary file object too (typed as a path only).
        torch.onnx.export(Hidden(backbone).eval(), tuple(tensors), buffer,  # type: ignore[arg-type]
                          input_names=list(names),
                          output_names=[output], dynamic_axes=axes,
                          opset_version=_OPSET, dynamo=False)
    return buffer.getvalue()


def export_transformer(model: Any, sample: Mapping[str, Any], output: str
                       ) -> tuple[bytes, dict[str, int]]:
    """ONNX bytes of a Hugging Face transformer, fused for ONNX Runtime's CPU kernels.

    Args:
        model: A ``transformers`` model (an encoder, or one with a head such as
            ``AutoModelForSequenceClassification``); switched to eager attention.
        sample: Tokenizer output (PyTorch tensors) to trace with; its ``input_ids``,
            ``attention_mask`` and ``token_type_ids`` become the graph's inputs, batch and
            sequence axes dynamic.
        output: The model output to return (``last_hidden_state``, ``logits``).

    Returns:
        The graph, and the fused op counts (``{}``: not fused, see :func:`_fuse`).
    """
    _require("onnx", "onnx")
    names = [name for name in INPUT_NAMES if name in sample]
    _use_eager_attention(model)
    graph = _trace(model, [sample[name] for name in names], names, output)
    return _fuse(graph, model.config)


def _use_eager_attention(backbone: Any) -> None:
    """Trace the plain attention ops, which ONNX Runtime fuses (see the module docstring).

    Models without the switch (older transformers) or without an eager path are traced as
    they are; :func:`_fuse` then finds nothing to fuse and the manifest says so.
    """
    setter = getattr(backbone, "set_attn_implementation", None)
    if setter is None:
        return
    try:
        setter("eager")
    except (ValueError, AttributeError):
        pass


#: Architectures whose layers ONNX Runtime's ``bert`` fusions recognise.
_FUSABLE = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "camembert", "electra"}


def _fuse(graph: bytes, config: Any) -> tuple[bytes, dict[str, int]]:
    """The graph with ONNX Runtime's transformer fusions applied, and the fused op counts
    (``{}`` when the architecture is not one they know or nothing was fused)."""
    model_type = str(getattr(config, "model_type", ""))
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    if model_type not in _FUSABLE or not heads or not hidden:
        return graph, {}
    _require("onnxruntime", "onnxruntime")
    import logging

    import onnx
    from onnxruntime.transformers import optimizer

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    try:
        quiet.setLevel(logging.ERROR)
        optimised = optimizer.optimize_model(
            onnx.load_from_string(graph), model_type="bert", num_heads=heads,
            hidden_size=hidden, opt_level=0)
    finally:
        quiet.setLevel(level)
    counts = {op: int(n) for op, n in optimised.get_fused_operator_statistics().items() if n}
    if not counts.get("Attention"):
        return graph, {}
    with tempfile.TemporaryDirectory(prefix="loopworks-onnx-") as work:
        target = Path(work) / FP32  # saving sorts the nodes and declares com.microsoft
        optimised.save_model_to_file(str(target))
        return target.read_bytes(), counts


def _quantize(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add the int8 graph: weights quantised per channel ahead, activations at run time.

    ONNX Runtime quantises a MatMul's input with one scale per batch, so a layer whose
    activations have outliers loses precision. Quantising each MatMul of all-MiniLM-L6-v2
    alone (the rest fp32) ranked them by the worst review vector: the feed-forward layers
    lose most, the attention projections little. So the feed-forward MatMuls (BERT-style
    node names) stay fp32 and the attention ones are int8: on 1,500 real reviews the worst
    vector is at cosine 0.996 to PyTorch, short texts ("ok", "Love it!") at 0.992. Fully
    quantised it runs about 1.7x faster again but falls to 0.97-0.98 (0.955 for short texts),
    and keeping only some feed-forward layers fp32 left short texts under 0.99.
    """
    _require("onnxruntime", "onnxruntime")
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(folder / FP32), load_external_data=False)
    keep = [node.name for node in graph.graph.node
            if node.op_type == "MatMul" and _FEED_FORWARD.search(node.name)]
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(dir=folder, prefix=".quantize-") as work:
        target = Path(work) / INT8
        try:  # it logs advice ("run pre-processing first") on the root logger
            root.setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # The fused ops' outputs have no inferred type: they are float.
                quantize_dynamic(folder / FP32, target, weight_type=QuantType.QInt8,
                                 per_channel=True, nodes_to_exclude=keep,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.setLevel(level)
        data = target.read_bytes()
    manifest = {**manifest, "files": {**manifest["files"], INT8: _entry(data)},
                "int8_fp32_nodes": len(keep)}
    atomic_write(folder / INT8, data)
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2))
    return manifest
