"""The processing job end to end, on real files, with both engines and every format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from loopworks.errors import ConfigurationError, InputError
from loopworks.processing import (
    ColumnNames,
    FileJobStore,
    ProcessingConfig,
    read_output,
    run_processing_job,
)
from loopworks.samples import generate_reviews, write_reviews
from loopworks.settings import load_settings

from conftest import EVENT_TIME, REAL_REVIEWS, ROBERTA, needs_shared

SPLITS = ("train", "validation", "test")


def run(inputs, out: Path, **kw):
    kw.setdefault("event_time", EVENT_TIME)
    return run_processing_job(ProcessingConfig(inputs=inputs, out=str(out), **kw))


def all_rows(out: Path, fmt: str = "parquet") -> pa.Table:
    tables = [read_output(out / s, fmt) for s in SPLITS if (out / s).exists()]
    return pa.concat_tables(tables).sort_by("review_id")


def test_outputs_columns_types_and_semantics(sample_csv: Path, tmp_path: Path) -> None:
    report = run(str(sample_csv), tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["rejects.parquet", "report.json", *sorted(
        SPLITS)]
    table = all_rows(out)
    schema = table.schema
    assert schema.names[:8] == ["review_id", "date", "sentiment", "label_id", "input_ids",
                                "attention_mask", "review_body", "split_type"]
    assert schema.field("input_ids").type == pa.list_(pa.int32(), 128)
    assert schema.field("attention_mask").type == pa.list_(pa.int32(), 128)
    meta = json.loads(pq.read_schema(next((out / "train").glob("*.parquet"))).metadata[
        b"loopworks"])
    assert meta["max_seq_length"] == 128 and meta["tokenizer"]["sha256"]
    # sentiment and label follow the rating of the source row
    raw = generate_reviews(3000, seed=7).to_pandas().set_index("review_id")
    frame = table.to_pandas().set_index("review_id")
    rating = raw.loc[frame.index, "star_rating"]
    expected = np.select([rating <= 2, rating == 3], [-1, 0], 1)
    assert (frame["sentiment"].to_numpy() == expected).all()
    assert (frame["label_id"] == frame["sentiment"] + 1).all()
    assert (frame["review_body"] == raw.loc[frame.index, "review_body"]).all()
    first = frame["input_ids"].iloc[0]
    assert first[0] == 101 and 102 in first
    # nothing silently dropped
    counts = report.counts
    assert counts["rows_in"] == 3000
    assert counts["rows_in"] == counts["rows_rejected"] + counts["rows_dropped_by_balancing"] \
        + counts["rows_out"]
    assert counts["rows_out"] == table.num_rows
    rejects = pq.read_table(out / "rejects.parquet")
    assert rejects.num_rows == counts["rows_rejected"] > 0
    assert set(rejects.column("reason").to_pylist()) == set(counts["rejected_by_reason"])
    assert {"empty_text", "rating_out_of_range"} <= set(counts["rejected_by_reason"])
    empty = rejects.filter(pc.equal(rejects.column("reason"), "empty_text"))
    assert all(not (t or "").strip() for t in empty.column("review_body").to_pylist())
    assert rejects.column("row").to_pylist()[0] >= 1
    # report on disk and in the job store agree
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["counts"] == counts and on_disk["status"] == "succeeded"
    stored = FileJobStore(load_settings().jobs_dir).get(report.job_id)
    assert stored.status == "succeeded" and stored.counts == counts
    tokens = report.tokens
    assert tokens["reviews"] == counts["rows_out"]
    assert 0 < tokens["share_truncated"] < 0.2 and 0 < tokens["share_padding"] < 1


def test_split_is_seeded_stable_and_close_to_percentages(tmp_path: Path) -> None:
    big = generate_reviews(4000, seed=1, broken=False)
    write_reviews(big.slice(0, 2500), tmp_path / "small.csv")
    write_reviews(big, tmp_path / "big.csv")
    a = all_rows(_out(run(str(tmp_path / "small.csv"), tmp_path / "a")))
    b = all_rows(_out(run(str(tmp_path / "big.csv"), tmp_path / "b")))
    c = all_rows(_out(run(str(tmp_path / "small.csv"), tmp_path / "c", seed=5)))
    split_a = dict(zip(a["review_id"].to_pylist(), a["split_type"].to_pylist(), strict=True))
    split_b = dict(zip(b["review_id"].to_pylist(), b["split_type"].to_pylist(), strict=True))
    assert all(split_b[k] == v for k, v in split_a.items())  # a review keeps its split
    assert c["split_type"].to_pylist() != a["split_type"].to_pylist()  # the seed matters
    shares = pc.value_counts(b["split_type"]).to_pylist()
    share = {d["values"]: d["counts"] / b.num_rows for d in shares}
    assert abs(share["train"] - 0.90) < 0.02 and abs(share["test"] - 0.05) < 0.015


def _out(report) -> Path:
    return Path(report.output)


def test_balance_and_exact_stratify(sample_csv: Path, tmp_path: Path) -> None:
    report = run(str(sample_csv), tmp_path / "o", balance=True, stratify="exact",
                 split="80,10,10")
    table = all_rows(tmp_path / "o")
    labels = pc.value_counts(table["label_id"]).to_pylist()
    per_class = {d["values"]: d["counts"] for d in labels}
    assert len(set(per_class.values())) == 1  # every class downsampled to the smallest
    smallest = min(report.counts["label_counts_usable"].values())
    assert set(per_class.values()) == {smallest}
    # balancing happened before tokenizing: only the kept rows were encoded
    assert report.tokens["reviews"] == table.num_rows
    n = table.num_rows
    by_split = report.counts["rows_by_split"]
    n_hold = int(np.ceil((1.0 - 0.8) * n))
    assert by_split["train"] == n - n_hold
    assert by_split["test"] == int(np.ceil(n_hold * (0.1 / (1.0 - 0.8))))
    for split in SPLITS:  # exact per-class proportions: classes differ by at most one row
        counts = report.counts["label_counts_by_split"][split].values()
        assert max(counts) - min(counts) <= 1


def test_same_output_whatever_engine_workers_and_sharding(sample_csv: Path,
                                                         tmp_path: Path) -> None:
    base = all_rows(_out(run(str(sample_csv), tmp_path / "w1", workers=1)))
    two = all_rows(_out(run(str(sample_csv), tmp_path / "w2", workers=2, shard_rows=500)))
    by_file = all_rows(_out(run(str(sample_csv), tmp_path / "wf", workers=2, shard_by="file")))
    assert base.equals(two) and base.equals(by_file)
    assert len(list((tmp_path / "w2" / "train").glob("*.parquet"))) == 6


@pytest.mark.ray
def test_ray_engine_gives_the_same_output(sample_csv: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    local = all_rows(_out(run(str(sample_csv), tmp_path / "local", workers=2)))
    ray_out = all_rows(_out(run(str(sample_csv), tmp_path / "ray", engine="ray", workers=2,
                                shard_rows=1000)))
    assert local.equals(ray_out)


def test_many_files_without_ids_get_unique_stable_ids(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    table = generate_reviews(600, seed=3, broken=False).drop_columns(["review_id"])
    write_reviews(table.slice(0, 300), folder / "part-1.csv")
    write_reviews(table.slice(300), folder / "nested" / "part-2.jsonl")
    report = run(str(folder), tmp_path / "out")
    ids = all_rows(tmp_path / "out")["review_id"].to_pylist()
    assert len(ids) == len(set(ids)) == report.counts["rows_out"] == 600
    assert "part-1.csv:1" in ids and "nested/part-2.jsonl:1" in ids
    again = all_rows(_out(run(str(folder / "*" / "*.jsonl"), tmp_path / "glob")))
    assert again.num_rows == 300


def test_duplicate_ids_are_rejected_not_dropped(tmp_path: Path) -> None:
    table = generate_reviews(200, seed=2, broken=False)
    write_reviews(pa.concat_tables([table, table.slice(0, 10)]), tmp_path / "dup.parquet")
    report = run(str(tmp_path / "dup.parquet"), tmp_path / "out")
    assert report.counts["rejected_by_reason"] == {"duplicate_id": 10}
    assert report.counts["rows_out"] == 200


@pytest.mark.parametrize("fmt", ["jsonl", "tfrecord"])
def test_other_output_formats_hold_the_same_features(sample_csv: Path, tmp_path: Path,
                                                     fmt: str) -> None:
    parquet = all_rows(_out(run(str(sample_csv), tmp_path / "pq")))
    run(str(sample_csv), tmp_path / fmt, output_format=fmt)
    assert (tmp_path / fmt / "rejects.jsonl").exists()
    if fmt == "jsonl":
        other = all_rows(tmp_path / fmt, fmt)
        assert other["review_id"].to_pylist() == parquet["review_id"].to_pylist()
        assert other["input_ids"].to_pylist() == parquet["input_ids"].to_pylist()
        assert other["date"][0].as_py().startswith("2024-") or other["date"][0].as_py()
        return
    records = pa.concat_tables([read_output(tmp_path / fmt / s, fmt) for s in SPLITS])
    assert records.num_rows == parquet.num_rows
    assert sorted(records.column_names) == ["input_ids", "input_mask", "label_ids", "segment_ids"]
    ours = sorted(map(tuple, records["input_ids"].to_pylist()))
    theirs = sorted(map(tuple, parquet["input_ids"].to_pylist()))
    assert ours == theirs
    assert all(len(s) == 128 and set(s) == {0} for s in records["segment_ids"].to_pylist()[:5])


def test_malformed_csv_names_file_and_line_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('review_id,star_rating,review_body\n1,5,"fine"\n2,4,"also, fine"\n3,1\n'
                   '4,2,"x"\n')
    with pytest.raises(InputError) as info:
        run(str(bad), tmp_path / "out")
    assert "bad.csv" in str(info.value) and "line 4" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]  # no temp folder left behind
    record = FileJobStore(load_settings().jobs_dir).list()[0]
    assert record.status == "failed" and "line 4" in record.error


def test_malformed_jsonl_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"review_body": "ok", "star_rating": 5}\n{"review_body": "x", \n')
    with pytest.raises(InputError, match=r"bad.jsonl, line 2"):
        run(str(bad), tmp_path / "out")


def test_missing_column_and_bad_options(sample_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no text column 'text'.*--text-column"):
        run(str(sample_csv), tmp_path / "o", columns=ColumnNames(text="text"))
    with pytest.raises(ConfigurationError, match="sum"):
        run(str(sample_csv), tmp_path / "o", split="90,5,6")
    with pytest.raises(InputError, match="matches no file|does not exist"):
        run(str(tmp_path / "missing*.csv"), tmp_path / "o")


def test_rerun_replaces_output_but_never_foreign_folders(sample_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(str(sample_csv), out, output_format="jsonl")
    run(str(sample_csv), out)
    assert not list(out.rglob("*.jsonl"))  # the old run's files are gone, not mixed in
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigurationError, match="--overwrite"):
        run(str(sample_csv), foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"


@needs_shared(REAL_REVIEWS)
@needs_shared(ROBERTA)
def test_lab_compat_reproduces_the_course_lab_counts(tmp_path: Path) -> None:
    report = run(str(REAL_REVIEWS), tmp_path / "lab", tokenizer=str(ROBERTA), balance=True,
                 lab_compat=True, workers=2,
                 columns=ColumnNames(text="Review Text", rating="Rating", id="-", date="-"))
    counts = report.counts
    assert counts["rows_usable"] == 19_662
    assert counts["label_counts_usable"]["0"] == 2_051
    assert {k: sum(v[c] for v in counts["label_counts_by_split"].values() for c in [k])
            for k in ("0", "1", "2")} == {"0": 2_051, "1": 2_051, "2": 2_051}
    assert counts["rows_by_split"] == {"train": 5_537, "validation": 307, "test": 309}
    table = all_rows(tmp_path / "lab")
    ids = sorted(int(i) for i in table["review_id"].to_pylist())
    assert ids[0] >= 0 and ids[-1] < 19_662
    assert set(table["date"].to_pylist()) == {EVENT_TIME}


def test_fsspec_urls_in_and_out_and_progress(sample_csv: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    report = run_processing_job(
        ProcessingConfig(inputs=f"file://{sample_csv}", out=f"file://{tmp_path}/url-out",
                         event_time=EVENT_TIME, shard_rows=1000),
        progress=lambda stage, n, total: seen.append((stage, n, total)))
    assert all_rows(tmp_path / "url-out").num_rows == report.counts["rows_out"]
    assert sum(n for stage, n, _ in seen if stage == "read") == 3000
    encoded = [(n, total) for stage, n, total in seen if stage == "encode"]
    assert len(encoded) == 3 and sum(n for n, _ in encoded) == encoded[0][1]


def test_job_ingests_into_a_feature_group(sample_csv: Path, tmp_path: Path) -> None:
    from loopworks.featurestore import FeatureStore

    report = run(str(sample_csv), tmp_path / "out", feature_group="reviews", workers=2)
    assert report.counts["feature_group"]["rows"] == report.counts["rows_out"]
    with FeatureStore() as store:
        group = store.feature_group("reviews")
        info = group.describe()
        assert info["transformation"]["max_seq_length"] == 128
        assert info["transformation"]["tokenizer"]["sha256"] == report.tokenizer["sha256"]
        first = all_rows(tmp_path / "out").slice(0, 1).to_pylist()[0]
        record = group.get_record(first["review_id"])
        assert record["input_ids"] == first["input_ids"]
        counts = store.query("SELECT split_type, count(*) AS n FROM reviews GROUP BY 1")
        assert counts["n"].sum() == report.counts["rows_out"]
    again = run(str(sample_csv), tmp_path / "out", feature_group="reviews")
    assert again.counts["feature_group"]["online_written"] == report.counts["rows_out"]
