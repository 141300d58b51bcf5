"""The synthetic review generator: shape, determinism, tone, broken rows, file round trips."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from loopworks.cli import main
from loopworks.errors import ConfigurationError
from loopworks.samples import generate_reviews, write_reviews
from loopworks.samples.reviews import broken_counts

COLUMNS = ["review_id", "product_id", "product_name", "division_name", "department_name",
           "class_name", "star_rating", "review_title", "review_body", "review_date"]
POSITIVE = re.compile(r"\b(love|perfect|perfectly|great|beautiful|gorgeous|flattering|"
                      r"comfortable|compliments|recommend)\b", re.I)
NEGATIVE = re.compile(r"\b(disappointed|disappointing|cheap|returned|itchy|unflattering|"
                      r"overpriced|terrible|poor|uncomfortable)\b", re.I)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_reviews(20_000, seed=11)


def test_columns_and_types(table: pa.Table) -> None:
    assert table.column_names == COLUMNS
    types = {f.name: f.type for f in table.schema}
    assert types["product_id"] == types["star_rating"] == pa.int64()
    assert types["review_date"] == pa.date32()
    for name in ("review_id", "product_name", "division_name", "department_name",
                 "class_name", "review_title", "review_body"):
        assert types[name] == pa.string(), name
    assert table.num_rows == 20_000
    assert table["review_id"][0].as_py() == "r00001"
    assert table["review_id"][-1].as_py() == "r20000"
    dates = table["review_date"]
    assert str(pc.min(dates)) >= "2019-01-01" and str(pc.max(dates)) <= "2024-12-31"


def test_same_seed_same_table_other_seed_differs() -> None:
    first = generate_reviews(3000, seed=5)
    assert first.equals(generate_reviews(3000, seed=5))
    other = generate_reviews(3000, seed=6)
    assert not first.equals(other)
    assert first["review_body"].to_pylist() != other["review_body"].to_pylist()


def test_ids_unique_and_never_broken(table: pa.Table) -> None:
    ids = table["review_id"]
    assert ids.null_count == 0
    assert pc.count_distinct(ids).as_py() == table.num_rows
    assert all(re.fullmatch(r"r\d{5}", i) for i in ids.to_pylist())


def test_catalog_consistent_per_product(table: pa.Table) -> None:
    frame = table.select(COLUMNS[1:6]).to_pandas()
    per_product = frame.groupby("product_id").nunique()
    assert (per_product == 1).all().all()
    assert set(frame["division_name"]) <= {"General", "General Petite", "Intimates"}
    intimate = frame["department_name"] == "Intimate"
    assert (frame.loc[intimate, "division_name"] == "Intimates").all()


def test_rating_distribution_skews_positive(table: pa.Table) -> None:
    stars = table["star_rating"].drop_null().to_numpy()
    share = {s: float(np.mean(stars == s)) for s in range(1, 6)}
    expected = {1: 0.04, 2: 0.07, 3: 0.12, 4: 0.22, 5: 0.55}
    for s, p in expected.items():
        assert abs(share[s] - p) < 0.02, (s, share[s])


def _tone_counts(bodies: list[str]) -> tuple[float, float]:
    pos = sum(len(POSITIVE.findall(b)) for b in bodies)
    neg = sum(len(NEGATIVE.findall(b)) for b in bodies)
    return pos / len(bodies), neg / len(bodies)


def test_wording_fits_rating(table: pa.Table) -> None:
    frame = table.select(["star_rating", "review_body"]).to_pandas().dropna()
    ratio = {}
    for low, high in ((1, 2), (3, 3), (4, 5)):
        bodies = frame.loc[frame["star_rating"].between(low, high), "review_body"].tolist()
        pos, neg = _tone_counts(bodies)
        ratio[low] = pos / (pos + neg)
    assert ratio[1] < 0.2
    assert 0.25 < ratio[3] < 0.75
    assert ratio[4] > 0.9


def test_text_variety_and_csv_hazards(table: pa.Table) -> None:
    bodies = [b for b in table["review_body"].to_pylist() if b and b.strip()]
    words = np.array([len(b.split()) for b in bodies])
    assert 0.70 < np.mean((words >= 20) & (words <= 100)) < 0.90
    assert 0.02 < np.mean(words > 100) < 0.06  # ~ the reviews beyond 128 word pieces
    assert 0.04 < np.mean((words >= 3) & (words <= 8)) < 0.12
    for mark in (",", '"', "'", "\n"):
        assert any(mark in b for b in bodies), repr(mark)
    assert any(not b.isascii() for b in bodies)
    null_titles = table["review_title"].null_count / table.num_rows
    assert 0.12 < null_titles < 0.18


def test_broken_rows_of_each_kind(table: pa.Table) -> None:
    counts = broken_counts(table)
    assert all(n >= 1 for n in counts.values()), counts
    assert 0.003 < sum(counts.values()) / table.num_rows < 0.008
    bodies = table["review_body"].to_pylist()
    assert None in bodies and "" in bodies and "   " in bodies
    stars = set(table["star_rating"].to_pylist())
    assert {0, 6, 9, -1} <= stars and None in stars


def test_small_tables_still_have_every_broken_kind() -> None:
    counts = broken_counts(generate_reviews(50, seed=3))
    assert all(n >= 1 for n in counts.values()), counts


def test_no_broken_leaves_the_rest_alone() -> None:
    broken, clean = generate_reviews(2000, seed=4), generate_reviews(2000, seed=4, broken=False)
    assert broken_counts(clean) == {"empty_text": 0, "rating_out_of_range": 0,
                                    "missing_rating": 0}
    changed = (pc.invert(pc.fill_null(pc.equal(broken["review_body"], clean["review_body"]),
                                      False)).to_numpy(zero_copy_only=False)
               | pc.invert(pc.fill_null(pc.equal(broken["star_rating"], clean["star_rating"]),
                                        False)).to_numpy(zero_copy_only=False))
    assert changed.sum() == sum(broken_counts(broken).values())


def test_zero_rows_and_negative_rows() -> None:
    assert generate_reviews(0).num_rows == 0
    with pytest.raises(ConfigurationError):
        generate_reviews(-1)


def _expected_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    frame["review_date"] = frame["review_date"].astype(str)
    for name in ("review_title", "review_body"):
        frame[name] = frame[name].fillna("").astype(object)
    return frame


def test_csv_round_trip_with_pandas_and_pyarrow(table: pa.Table, tmp_path: Path) -> None:
    path = write_reviews(table, tmp_path / "deep" / "folder" / "reviews.csv")
    assert path == tmp_path / "deep" / "folder" / "reviews.csv"
    assert [p.name for p in path.parent.iterdir()] == ["reviews.csv"]  # no temp file left
    expected = _expected_frame(table)

    by_pandas = pd.read_csv(path, dtype={"star_rating": "Int64", "product_id": "Int64"},
                            keep_default_na=False, na_values={"star_rating": [""]})
    by_pandas = by_pandas.astype({c: object for c in ("review_title", "review_body",
                                                      "review_date")})
    pd.testing.assert_frame_equal(by_pandas, expected, check_dtype=False)

    read = pacsv.ReadOptions()
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={"review_date": pa.date32()},
                                   strings_can_be_null=True, quoted_strings_can_be_null=False)
    by_arrow = pacsv.read_csv(path, read_options=read, parse_options=parse,
                              convert_options=convert)
    assert by_arrow.equals(table)  # nulls stay null, "" stays "": exact


def test_jsonl_round_trip(table: pa.Table, tmp_path: Path) -> None:
    path = write_reviews(table, tmp_path / "reviews.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == table.num_rows
    records = [json.loads(line) for line in lines]
    expected = table.to_pylist()
    for rec, exp in zip(records, expected, strict=True):
        exp["review_date"] = exp["review_date"].isoformat()
        assert rec == exp
    few = write_reviews(table.slice(0, 10), tmp_path / "few.json")  # .json: JSON Lines too
    assert len(few.read_text(encoding="utf-8").splitlines()) == 10


def test_parquet_round_trip_and_explicit_format(table: pa.Table, tmp_path: Path) -> None:
    assert pq.read_table(write_reviews(table, tmp_path / "r.parquet")).equals(table)
    odd = write_reviews(table, tmp_path / "r.data", format="parquet")
    assert pq.read_table(odd).equals(table)


def test_unknown_extension_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        write_reviews(generate_reviews(5), tmp_path / "reviews.xlsx")
    message = str(info.value)
    for ext in (".csv", ".jsonl", ".json", ".parquet"):
        assert ext in message
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigurationError):
        write_reviews(generate_reviews(5), tmp_path / "reviews.csv", format="xml")


def test_cli_writes_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    result = CliRunner().invoke(main, ["sample", "reviews", "--rows", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "200 reviews" in result.output and str(out) in result.output
    assert "empty text" in result.output and "missing rating" in result.output
    assert pacsv.read_csv(out, parse_options=pacsv.ParseOptions(newlines_in_values=True)
                          ).num_rows == 200

    result = CliRunner().invoke(main, ["sample", "reviews", "--rows", "60", "--no-broken",
                                       "--seed", "3", "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == 0, result.output
    assert "broken rows: none" in result.output
    assert broken_counts(pq.read_table(tmp_path / "r.parquet"))["empty_text"] == 0


def test_cli_bad_extension_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sample", "reviews", "--out", str(tmp_path / "r.txt")])
    assert result.exit_code == 2
    assert ".parquet" in result.output and "Traceback" not in result.output
