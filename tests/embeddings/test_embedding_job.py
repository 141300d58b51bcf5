"""The embedding job: same vectors whatever the batching and workers, Parquet and a feature
group as outputs, and clear errors for bad input."""

from __future__ import annotations

import importlib
import importlib.util
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.embeddings import EmbedConfig, embed_texts, run_embedding_job
from loopworks.errors import ConfigurationError, InputError
from loopworks.featurestore import FeatureStore
from loopworks.samples import generate_reviews

from conftest import needs_torch

pytestmark = needs_torch


@pytest.fixture(scope="module")
def reviews() -> pa.Table:
    return generate_reviews(16, seed=3, broken=False)


def test_same_vectors_whatever_the_batch_size_and_worker_count(reviews: pa.Table) -> None:
    # Short texts keep this quick; the batching and windows are what is under test.
    texts = [t[:60] for t in reviews.column("review_body").to_pylist()]
    one = embed_texts(texts, batch_size=32)
    assert one.shape == (len(texts), 384) and one.dtype == np.float32
    np.testing.assert_allclose(embed_texts(texts, batch_size=1), one, atol=1e-5)
    np.testing.assert_allclose(embed_texts(texts, batch_size=5), one, atol=1e-5)
    # Two spawned workers, each loading the model once; windows come back in any order.
    seen: list[int] = []
    two = embed_texts(texts, batch_size=2, workers=2, min_rows_per_worker=1,
                      progress=lambda stage, done, total: seen.append(done))
    np.testing.assert_allclose(two, one, atol=1e-5)
    assert sum(seen) == len(texts) and len(seen) > 1


def test_vectors_land_in_a_feature_group_and_come_back_as_float32_lists(
        tmp_path, reviews: pa.Table) -> None:
    source = tmp_path / "reviews.parquet"
    pq.write_table(reviews, source)
    out = tmp_path / "out" / "embeddings.parquet"
    report = run_embedding_job(EmbedConfig(inputs=str(source), out=str(out),
                                           date_column="review_date", workers=2,
                                           feature_group="review_embeddings"))
    assert (report.rows, report.dimension) == (reviews.num_rows, 384)
    assert report.workers == 1  # 16 rows: starting a second worker would not pay
    assert report.feature_group is not None and report.feature_group["rows"] == reviews.num_rows
    written = pq.read_table(out)
    assert written.column_names == ["review_id", "review_body", "review_date", "embedding"]
    assert written.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert json.loads(written.schema.metadata[b"loopworks"])["model"]["name"] \
        == "all-MiniLM-L6-v2"
    assert written.column("review_id").to_pylist() == \
        [str(i) for i in reviews.column("review_id").to_pylist()]
    vectors = np.asarray(written.column("embedding").to_pylist(), dtype=np.float32)

    with FeatureStore() as store:
        group = store.feature_group("review_embeddings")
        definition = next(d for d in group.spec.definitions if d.name == "embedding")
        assert (definition.element, definition.length) == ("float32", 384)
        record = group.get_record(written.column("review_id")[3].as_py())
        assert len(record["embedding"]) == 384
        assert np.array_equal(np.asarray(record["embedding"], dtype=np.float32), vectors[3])
        rows = store.query("SELECT review_id, embedding FROM review_embeddings_latest "
                           "ORDER BY review_id", output="arrow")
        assert rows.num_rows == reviews.num_rows
        assert rows.schema.field("embedding").type.value_type == pa.float32()
        assert all(len(v) == 384 for v in rows.column("embedding").to_pylist())


def test_empty_texts_are_named_by_file_and_row(tmp_path) -> None:
    source = tmp_path / "texts.csv"
    source.write_text("review_id,review_body\na,fine dress\nb,\nc,  \nd,ok\n")
    with pytest.raises(InputError, match=r"2 row\(s\) with empty text.*row 2.*row 3") as caught:
        run_embedding_job(EmbedConfig(inputs=str(source), out=str(tmp_path / "e.parquet")))
    assert caught.value.rows == [2, 3]
    assert not (tmp_path / "e.parquet").exists()
    with pytest.raises(InputError, match=r"row 2"):
        embed_texts(["a", ""])


def test_missing_columns_and_folder_outputs_are_refused(tmp_path) -> None:
    source = tmp_path / "texts.jsonl"
    source.write_text('{"id": "a", "text": "fine"}\n')
    with pytest.raises(InputError, match="no column 'review_body'.*id, text"):
        run_embedding_job(EmbedConfig(inputs=str(source), out=str(tmp_path / "e.parquet")))
    with pytest.raises(ConfigurationError, match="is a folder"):
        run_embedding_job(EmbedConfig(inputs=str(source), out=str(tmp_path),
                                      text_column="text", id_column="id"))
    with pytest.raises(ConfigurationError, match="batch size"):
        embed_texts(["fine"], batch_size=0)


def test_cli_embeds_a_processing_output_folder(tmp_path, sample_csv) -> None:
    runner = CliRunner()
    features = tmp_path / "features"
    done = runner.invoke(main, ["process", str(sample_csv), "--out", str(features), "-q",
                                "--workers", "1"])
    assert done.exit_code == 0, done.output
    out = tmp_path / "emb.parquet"
    # The first 20 rows are enough; the folder's rejects (empty texts) are not read.
    small = tmp_path / "small"
    (small / "train").mkdir(parents=True)
    pq.write_table(pq.read_table(features / "train").slice(0, 20),
                   small / "train" / "part-0.parquet")
    (small / "report.json").write_text((features / "report.json").read_text())
    result = runner.invoke(main, ["embed", str(small), "--out", str(out), "--workers", "1",
                                  "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["rows"], report["dimension"]) == (20, 384)
    assert report["runtime"] == "onnx" and report["threads"] >= 1
    assert pq.read_table(out).schema.field("date").type == pa.timestamp("us", "UTC")
    onnx_vectors = np.asarray(pq.read_table(out).column("embedding").to_pylist())
    # The PyTorch runtime gives the same vectors; an unknown one is refused with the choices.
    by_torch = tmp_path / "torch.parquet"
    result = runner.invoke(main, ["embed", str(small), "--out", str(by_torch), "--workers", "1",
                                  "--runtime", "torch", "-q"])
    assert result.exit_code == 0, result.output
    assert "all-MiniLM-L6-v2 (384 dimensions, torch)" in result.output
    torch_vectors = np.asarray(pq.read_table(by_torch).column("embedding").to_pylist())
    assert ((onnx_vectors * torch_vectors).sum(axis=1) > 0.999).all()
    bad = runner.invoke(main, ["embed", str(small), "--out", str(out), "--runtime", "tf"])
    assert bad.exit_code == 2 and "'onnx-int8'" in bad.output
    bad = runner.invoke(main, ["embed", str(small), "--out", str(out), "--model", "./nope"])
    assert bad.exit_code == 2 and "model path './nope'" in bad.output


def test_exported_members() -> None:
    module = importlib.import_module("loopworks.embeddings")
    for member in module.__all__:
        assert hasattr(module, member)
    public = {n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
              and getattr(v, "__module__", "").startswith("loopworks.embeddings")}
    assert public <= set(module.__all__)


@pytest.mark.slow
@pytest.mark.ray
def test_the_ray_engine_gives_the_same_vectors(reviews: pa.Table) -> None:
    pytest.importorskip("ray", reason='Ray is not installed: pip install "loopworks[ray]"')
    texts = [t[:60] for t in reviews.column("review_body").to_pylist()]
    on_ray = embed_texts(texts, batch_size=4, engine="ray", workers=2, min_rows_per_worker=1)
    np.testing.assert_allclose(on_ray, embed_texts(texts, batch_size=32), atol=1e-5)
