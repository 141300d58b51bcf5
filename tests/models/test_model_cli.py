"""`loopworks model ...` and `loopworks predict`, run as a user would (click's runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from model_fixtures import processed_fixture  # noqa: F401

from loopworks.cli import main
from loopworks.samples import generate_reviews, write_reviews

COLUMNS = ["prediction", "confidence", "prob_negative", "prob_neutral", "prob_positive"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory, processed: Path) -> Path:
    """A home with model `cli` trained through the command line (word features: quick)."""
    home = tmp_path_factory.mktemp("cli-home")
    result = invoke("model", "train", "cli", "--input", str(processed), "--features", "word",
                    "--home", str(home))
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture(scope="module")
def raw_reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw generated reviews, with the usual few broken rows (some with empty text)."""
    path = tmp_path_factory.mktemp("raw") / "reviews.csv"
    write_reviews(generate_reviews(1200, seed=5), path)
    return path


def test_train_prints_metrics_and_where_the_report_went(cli_home: Path) -> None:
    version = cli_home / "models" / "cli" / "1"
    assert (version / "report.json").is_file() and (version / "reliability.png").is_file()
    card = json.loads((version / "model.json").read_text())
    assert card["training_data"]["split"] == "data"  # the processing job's splits
    result = invoke("model", "train", "cli", "--input", str(version / "report.json"),
                    "--home", str(cli_home))
    assert result.exit_code == 2 and "no text column found" in result.output
    assert "pass --text-column" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in version.parent.iterdir() if not p.name.startswith(".")) == \
        ["1"]


def empty_rows(path: Path) -> list[int]:
    raw = pd.read_csv(path)
    return raw.index[raw["review_body"].fillna("").str.strip() == ""].tolist()


def test_train_from_raw_reviews_with_a_rating_column(raw_reviews: Path, tmp_path: Path) -> None:
    empty = len(empty_rows(raw_reviews))
    assert empty > 0
    home = str(tmp_path / "home")
    args = ["model", "train", "raw", "--input", str(raw_reviews), "--rating-column",
            "star_rating", "--features", "word", "--home", home]
    failed = invoke(*args)
    assert failed.exit_code == 2
    assert "row(s) with empty text in column 'review_body'" in failed.output
    assert "--skip-invalid" in failed.output and "Traceback" not in failed.output
    result = invoke(*args, "--skip-invalid", "--split", "70,15,15", "--seed", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("model raw version 1", "accuracy", "macro F1", "ECE (15 bins)", "calibrated",
                 "report: ", "reliability.png", f"skipped {empty} empty text"):
        assert text in out, out
    described = json.loads(invoke("model", "describe", "raw", "--home", home).output)
    assert described["training_data"]["label_column"] == "star_rating"
    assert described["training_data"]["skipped"]["empty_text"] == empty
    assert described["metrics"]["test"]["accuracy"] > 0.8


def test_list_and_describe(cli_home: Path) -> None:
    listed = invoke("model", "list", "--home", str(cli_home))
    assert listed.exit_code == 0 and "cli" in listed.output and "1 of 1" in listed.output
    as_json = json.loads(invoke("model", "list", "--json", "--home", str(cli_home)).output)
    assert [(m["name"], m["version"]) for m in as_json] == [("cli", 1)]
    card = json.loads(invoke("model", "describe", "cli:1", "--home", str(cli_home)).output)
    assert card["features"]["kind"] == "word" and card["path"].endswith("cli/1")
    missing = invoke("model", "describe", "nope", "--home", str(cli_home))
    assert missing.exit_code == 2 and "no model named 'nope'" in missing.output
    empty = invoke("model", "list", "--home", str(cli_home / "empty"))
    assert "no models yet" in empty.output


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_predict_keeps_every_column_and_adds_predictions(cli_home: Path, processed: Path,
                                                         tmp_path: Path, suffix: str) -> None:
    out = tmp_path / "sub" / f"predictions{suffix}"
    result = invoke("predict", "--model", "cli", "--input", str(processed / "test"), "--out",
                    str(out), "--home", str(cli_home), "--quiet")
    assert result.exit_code == 0, result.output
    assert "with model cli:1" in result.output and "mean confidence" in result.output
    source = pd.read_parquet(processed / "test")
    got = {".parquet": pd.read_parquet, ".csv": pd.read_csv,
           ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix](out)
    assert got.columns.tolist() == source.columns.tolist() + COLUMNS
    assert len(got) == len(source)
    assert got["review_id"].tolist() == source["review_id"].tolist()
    assert set(got["prediction"]) <= {"negative", "neutral", "positive"}
    probs = got[COLUMNS[2:]].to_numpy()
    assert probs.sum(axis=1) == pytest.approx(1.0)
    assert got["confidence"].to_numpy() == pytest.approx(probs.max(axis=1))
    assert (got["prediction"].map({"negative": 0, "neutral": 1, "positive": 2})
            == source["label_id"]).mean() > 0.8
    if suffix == ".parquet":
        meta = json.loads(pq.read_schema(out).metadata[b"loopworks.predictions"])
        assert meta["model"] == "cli:1" and meta["columns"] == COLUMNS
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left


def test_predict_names_empty_rows_or_skips_them(cli_home: Path, raw_reviews: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    failed = invoke("predict", "--model", "cli", "--input", str(raw_reviews), "--out", str(out),
                    "--home", str(cli_home), "--batch-rows", "100")
    assert failed.exit_code == 2
    raw = pd.read_csv(raw_reviews)
    empty = empty_rows(raw_reviews)
    assert (f"reviews.csv: {len(empty)} row(s) have empty text in column 'review_body': rows "
            f"{', '.join(map(str, empty))}") in failed.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
    ok = invoke("predict", "--model", "cli", "--input", str(raw_reviews), "--out", str(out),
                "--home", str(cli_home), "--on-empty", "skip", "--batch-rows", "100")
    assert ok.exit_code == 0, ok.output
    assert f"{len(empty)} empty-text rows left without a prediction" in ok.output
    got = pd.read_parquet(out)
    assert len(got) == len(raw) and got["prediction"].isna().sum() == len(empty)
    assert got.loc[empty, "confidence"].isna().all()
    assert got["review_id"].tolist() == raw["review_id"].tolist()


def test_predict_errors_are_clear(cli_home: Path, raw_reviews: Path, tmp_path: Path) -> None:
    home = ["--home", str(cli_home)]
    cases = [
        (["--model", "cli", "--input", str(raw_reviews), "--out", str(tmp_path / "p.csv"),
          "--text-column", "body"],
         "reviews.csv: no text column 'body'; its columns are: review_id"),
        (["--model", "cli", "--input", str(tmp_path / "missing.csv"), "--out",
          str(tmp_path / "p.csv")], "does not exist"),
        (["--model", "cli", "--input", str(raw_reviews), "--out", str(tmp_path / "p.xlsx")],
         "cannot tell the output format"),
        (["--model", "other", "--input", str(raw_reviews), "--out", str(tmp_path / "p.csv")],
         "no model named 'other'"),
        (["--model", "cli:9", "--input", str(raw_reviews), "--out", str(tmp_path / "p.csv")],
         "has no version 9"),
    ]
    for args, message in cases:
        result = invoke("predict", *args, *home)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    clash = tmp_path / "clash.csv"
    pd.DataFrame({"text": ["fine"], "prediction": ["x"]}).to_csv(clash, index=False)
    result = invoke("predict", "--model", "cli", "--input", str(clash), "--out",
                    str(tmp_path / "p.csv"), *home)
    assert result.exit_code == 2 and "already has column(s) prediction" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clash.csv"]


def test_help_texts() -> None:
    assert "predict" in invoke("--help").output and "model" in invoke("--help").output
    for args in (["model", "train"], ["model", "list"], ["model", "describe"], ["predict"]):
        result = invoke(*args, "--help")
        assert result.exit_code == 0 and "--home" in result.output


def test_predict_on_a_processing_output_folder(cli_home: Path, processed: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "all.parquet"
    result = invoke("predict", "--model", "cli", "--input", str(processed), "--out", str(out),
                    "--home", str(cli_home), "--quiet")
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    report = json.loads((processed / "report.json").read_text())
    assert len(got) == sum(len(pd.read_parquet(processed / s))
                           for s in ("train", "validation", "test"))
    assert set(got["split_type"]) == {"train", "validation", "test"} and report
