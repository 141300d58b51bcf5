"""The embedding model: sentence vectors, token vectors in context, and loading errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from loopworks.embeddings import EmbeddingModel, resolve_model
from loopworks.errors import ConfigurationError, MissingDependencyError

from conftest import needs_torch

TEXTS = ["I love the dress.", "Runs small, order a size up.",
         "The fabric is thin and the seams came apart after one wash, so I sent it back.",
         "ok", "Beautiful color!"]


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return EmbeddingModel(threads=1)


@needs_torch
def test_sentence_vectors_are_normalised_float32_of_the_model_dimension(
        model: EmbeddingModel) -> None:
    vectors = model.encode(TEXTS, batch_size=2)
    assert model.dimension == 384
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Same as sentence-transformers' own encode (mean pooling + normalise, as the model says).
    reference = model._model.encode(TEXTS, batch_size=32, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    # Order is the input order, whatever the length sorting inside.
    np.testing.assert_allclose(model.encode(TEXTS[::-1], batch_size=3)[::-1], vectors,
                               atol=1e-5)
    assert model.encode([]).shape == (0, 384)


@needs_torch
def test_the_token_vector_for_dress_depends_on_its_context(model: EmbeddingModel) -> None:
    short, long = model.encode_tokens(["I love the dress.",
                                       "I love the dress, but not the price."])
    assert short.tokens == ["[CLS]", "i", "love", "the", "dress", ".", "[SEP]"]
    assert short.text[slice(*short.offsets[4])] == "dress"
    assert short.vectors.shape == (7, 384) and long.vectors.shape == (12, 384)
    a, b = short.vector_for("dress"), long.vector_for("dress")
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    # Measured 0.9885 with all-MiniLM-L6-v2: the same word, two vectors, because the rest of
    # the sentence flows into it through self-attention. Float noise would be ~1e-7.
    assert cosine < 0.995
    assert np.linalg.norm(a - b) > 0.1 * np.linalg.norm(a)
    # A static word vector (the model's input embedding row for "dress") is one row whatever
    # the sentence: identical in both.
    table = model.word_embeddings
    ids = [model.tokenizer.convert_tokens_to_ids(t.tokens[t.tokens.index("dress")])
           for t in (short, long)]
    assert ids[0] == ids[1]
    static_short, static_long = table[ids[0]], table[ids[1]]
    assert np.array_equal(static_short, static_long)
    # The contextual vector for a word is no longer its static vector.
    assert not np.allclose(a, static_short)


def test_a_missing_model_path_is_named() -> None:
    with pytest.raises(ConfigurationError, match="nowhere/model"):
        resolve_model("./nowhere/model")


def test_a_folder_that_is_not_a_model_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="no modules.json or config.json"):
        resolve_model(str(tmp_path))


@needs_torch
def test_a_hub_name_without_network_says_how_to_allow_it() -> None:
    with pytest.raises(ConfigurationError, match="--allow-network"):
        EmbeddingModel("someone/no-such-model-here")


def test_missing_torch_names_the_pinned_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as caught:
        EmbeddingModel()
    assert "pip install torch==2.13.0" in str(caught.value)
    assert 'loopworks[embeddings]' in str(caught.value)
    assert caught.value.package == "torch"
    # It reaches the driver intact from a worker process.
    import pickle

    again = pickle.loads(pickle.dumps(caught.value))
    assert str(again) == str(caught.value) and again.command == caught.value.command


@needs_torch
def test_sentence_embedding_features_fit_a_pipeline_and_pickle_without_the_model() -> None:
    import pickle

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from loopworks.embeddings import SentenceEmbeddingFeatures

    texts = ["I love it, perfect fit", "great dress, love the color", "awful, it fell apart",
             "terrible fabric, sent it back"]
    pipeline = Pipeline([("embed", SentenceEmbeddingFeatures(threads=1)),
                         ("clf", LogisticRegression())]).fit(texts, [1, 1, 0, 0])
    assert list(pipeline.predict(["love this dress", "it fell apart, terrible"])) == [1, 0]
    saved = pickle.dumps(pipeline)
    assert len(saved) < 100_000  # the 90 MB model is not in it
    assert list(pickle.loads(saved).predict(["love this dress"])) == [1]


@needs_torch
def test_sentence_embedding_features_run_on_onnx_by_default_and_agree_with_torch() -> None:
    """The transformer automated labeling reads encodes on ONNX Runtime unless told
    otherwise, with the PyTorch vectors' directions; one pickled before the runtimes
    existed keeps encoding on PyTorch, as it did."""
    import pickle

    from loopworks.embeddings import SentenceEmbeddingFeatures

    texts = ["Runs small, order a size up.", "The zipper broke the second time I wore it.",
             "Soft, warm and the colour is exactly as pictured. Love it!", "meh"]
    default = SentenceEmbeddingFeatures(threads=1)
    assert default.runtime == "onnx"
    onnx = default.transform(texts)
    torch = SentenceEmbeddingFeatures(threads=1, runtime="torch").transform(texts)
    assert onnx.shape == torch.shape == (4, 384)
    assert (onnx * torch).sum(axis=1).min() >= 0.999
    state = default.__getstate__()
    del state["runtime"]
    old = pickle.loads(pickle.dumps(SentenceEmbeddingFeatures()))
    old.__setstate__(state)
    assert old.runtime == "torch"
    with pytest.raises(ConfigurationError, match="onnx-int8"):
        SentenceEmbeddingFeatures(runtime="tensorrt").transform(texts)


@needs_torch
def test_the_sentiment_model_reads_embeddings_beside_n_grams(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``word+char+embedding``: the sentence vector joins the TF-IDF rows; the model saves
    without the encoder in it, its card says which encoder, and texts encoded once come
    from the process's cache the next time (a round re-scores the same items)."""
    from loopworks.embeddings import features as embedding_features
    from loopworks.models import ModelRegistry, SentimentModel

    texts = ["I love it, perfect fit", "great dress, love the color", "awful, it fell apart",
             "terrible fabric, sent it back", "so comfortable, love it",
             "cheap and ugly, returned it"] * 3
    labels = np.array([1, 1, 0, 0, 1, 0] * 3)
    model = SentimentModel(["negative", "positive"], features="word+char+embedding").fit(
        texts, labels)
    union = model.estimator.named_steps["features"]
    assert [name for name, _ in union.transformer_list] == ["word", "char", "embedding"]
    assert union.transformer_weights == {"embedding": 0.5}
    # Words no training row used: the n-grams know nothing of them, the embedding does.
    probs = model.predict_proba(["dreadful", "wonderful"])
    alone = SentimentModel(["negative", "positive"], features="embedding").fit(texts, labels)
    assert list(alone.predict_proba(["dreadful", "wonderful"]).argmax(axis=1)) == [0, 1]
    ngrams = SentimentModel(["negative", "positive"]).fit(texts, labels)
    without = ngrams.predict_proba(["dreadful", "wonderful"])
    assert probs[1, 1] - probs[0, 1] > without[1, 1] - without[0, 1]
    assert "dreadful" in {key[-1] for key in embedding_features._cache}
    again = model.predict_proba(["dreadful", "wonderful"])
    np.testing.assert_allclose(again, probs)
    info = model.describe_features()
    assert info["embedding"]["weight"] == 0.5 and set(info["vocabulary"]) == {"word", "char"}
    registry = ModelRegistry(tmp_path)
    from loopworks.models import ModelCard

    card = registry.save(model, "with-embeddings", ModelCard(name="with-embeddings",
                                                             classes=["negative", "positive"]))
    loaded = registry.load("with-embeddings", card.version)
    np.testing.assert_allclose(loaded.predict_proba(["dreadful", "wonderful"]), probs)
