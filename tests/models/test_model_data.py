"""Reading labeled data: columns, labels, splits, errors naming rows, feature groups."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_fixtures import processed_fixture  # noqa: F401

from loopworks.errors import ConfigurationError, InputError, NotFoundError
from loopworks.models import labeled_data_from_frame, read_labeled_data


def frame(n: int = 60, **extra: object) -> pd.DataFrame:
    texts = [f"review {i} " + ("great" if i % 3 == 2 else "bad" if i % 3 == 0 else "ok")
             for i in range(n)]
    return pd.DataFrame({"text": texts, "label_id": [i % 3 for i in range(n)], **extra})


def test_processing_output_folder_gives_its_splits(processed: Path) -> None:
    data = read_labeled_data(processed)
    assert (data.text_column, data.label_column, data.split_origin) == \
        ("review_body", "label_id", "data")
    counts = data.counts()
    assert counts["train"] > 5 * counts["validation"] > 0 and counts["test"] > 0
    assert len(data) == sum(counts.values())  # rejects.parquet was not read
    same = read_labeled_data(processed, label_column="sentiment")
    assert np.array_equal(same.labels, data.labels)  # sentiment -1/0/1 maps to 0/1/2
    assert same.sha256() == data.sha256()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_labeled_files_of_every_format(tmp_path: Path, suffix: str) -> None:
    df = frame()
    path = tmp_path / f"labeled{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    data = read_labeled_data(path, seed=3)
    assert data.split_origin == "random" and len(data) == 60
    assert data.class_counts() == {"negative": 20, "neutral": 20, "positive": 20}
    # stratified: every class in every split, same split for the same seed
    for part in ("train", "validation", "test"):
        assert set(data.part(part)[1].tolist()) == {0, 1, 2}
    again = read_labeled_data(path, seed=3)
    assert np.array_equal(again.split, data.split) and again.sha256() == data.sha256()
    assert read_labeled_data(path, seed=4).sha256() != data.sha256()


def test_class_names_ratings_and_custom_classes() -> None:
    by_name = labeled_data_from_frame(pd.DataFrame({"text": ["a", "b", "c"] * 5,
                                                    "label": ["positive", "negative",
                                                              " neutral"] * 5}))
    assert by_name.labels[:3].tolist() == [2, 0, 1]
    rated = labeled_data_from_frame(pd.DataFrame({"text": ["a"] * 5, "stars": [1, 2, 3, 4, 5]}),
                                    rating_column="stars", split=(1.0, 0.0, 0.0))
    assert rated.labels.tolist() == [0, 0, 1, 2, 2]
    binary = labeled_data_from_frame(pd.DataFrame({"body": ["x", "y"] * 4,
                                                   "y": ["spam", "ham"] * 4}),
                                     label_column="y", classes=("ham", "spam"))
    assert binary.labels[:2].tolist() == [1, 0] and binary.text_column == "body"
    with pytest.raises(ConfigurationError, match="three classes"):
        labeled_data_from_frame(pd.DataFrame({"text": ["a"], "r": [1]}), rating_column="r",
                                classes=("a", "b"))


def test_missing_columns_name_the_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "labeled.csv"
    frame().to_csv(path, index=False)
    with pytest.raises(InputError, match=r"labeled\.csv: no text column 'body'; its columns "
                                         r"are: text, label_id") as err:
        read_labeled_data(path, text_column="body")
    assert err.value.column == "body" and err.value.file == str(path)
    with pytest.raises(InputError, match="no label column 'stars'"):
        read_labeled_data(path, label_column="stars")
    pd.DataFrame({"words": ["a"], "label": [1]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="no text column found .*pass --text-column"):
        read_labeled_data(path)
    with pytest.raises(InputError, match="does not exist"):
        read_labeled_data(tmp_path / "nope.csv")


def test_empty_texts_and_bad_labels_are_named_by_row_or_skipped() -> None:
    df = frame(30)
    df.loc[[4, 17], "text"] = ["  ", None]
    df.loc[9, "label_id"] = 7
    with pytest.raises(InputError, match=r"2 row\(s\) with empty text in column 'text': "
                                         r"rows 4, 17") as err:
        labeled_data_from_frame(df, source="reviews.csv")
    assert err.value.rows == [4, 17]
    df.loc[[4, 17], "text"] = "fine"
    with pytest.raises(InputError, match=r"reviews\.csv: 1 row\(s\) with a label in column "
                                         r"'label_id' that is not one of .*rows 9.*\[7\]"):
        labeled_data_from_frame(df, source="reviews.csv")
    df.loc[4, "text"] = ""
    data = labeled_data_from_frame(df, skip_invalid=True)
    assert data.skipped == {"empty_text": 1, "bad_label": 1} and len(data) == 28


def test_split_column_must_hold_all_three_splits() -> None:
    df = frame(9, split_type=["train"] * 6 + ["validation"] * 3)
    with pytest.raises(InputError, match="has no test rows"):
        labeled_data_from_frame(df)
    df["split_type"] = ["train", "dev", "test"] * 3
    with pytest.raises(InputError, match=r"holds \['dev'\]"):
        labeled_data_from_frame(df)
    df["split_type"] = ["train", "val", "test"] * 3
    assert labeled_data_from_frame(df).counts() == {"train": 3, "validation": 3, "test": 3}
    with pytest.raises(ConfigurationError, match="split fractions"):
        labeled_data_from_frame(frame(), split_column="none", split=(0.5, 0.5, 0.5))


def test_feature_group_and_query_sources(tmp_path: Path) -> None:
    from loopworks.featurestore import FeatureStore

    home = tmp_path / "home"
    df = frame(90, review_id=[f"r{i}" for i in range(90)],
               date=[datetime(2024, 1, 1, tzinfo=UTC)] * 90)
    with FeatureStore(home=home) as store:
        group = store.create_feature_group("reviews", record_id="review_id",
                                           event_time="date", df=df)
        group.ingest(df)
    data = read_labeled_data(feature_group="reviews", home=home)
    assert len(data) == 90 and data.source == "feature group 'reviews'"
    picked = read_labeled_data(query="SELECT text, label_id FROM reviews_latest WHERE "
                                     "label_id <> 1", home=home, classes=("neg", "x", "pos"),
                               split=(0.6, 0.2, 0.2))
    assert len(picked) == 60 and set(picked.labels.tolist()) == {0, 2}
    with pytest.raises(ConfigurationError, match="exactly one"):
        read_labeled_data("a.csv", feature_group="reviews")
    with pytest.raises(NotFoundError, match="no feature group 'other'"):
        read_labeled_data(feature_group="other", home=home)
    with pytest.raises(NotFoundError):  # only existing (validated) names reach the SQL
        read_labeled_data(feature_group='x"; DROP TABLE reviews; --', home=home)


def test_content_hash_ignores_row_order_but_not_content() -> None:
    df = frame(30, split_type=["train", "validation", "test"] * 10)
    base = labeled_data_from_frame(df).sha256()
    assert labeled_data_from_frame(df.iloc[::-1]).sha256() == base
    changed = df.copy()
    changed.loc[3, "label_id"] = 2
    assert labeled_data_from_frame(changed).sha256() != base
