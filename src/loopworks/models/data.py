"""Labeled training data: read from files or a feature group, labels to ids, splits, a hash.

A labeled file is CSV, JSON Lines or Parquet (a file, a folder or a glob) with a text
column and a label column. The processing job's output folder works as it is: its
``train/``, ``validation/`` and ``test/`` parts become the three splits. Labels may be
class names, label ids (0..k-1) or sentiment (-1/0/1); a 1-5 star rating column can stand
in for them. Rows that cannot be used are an error naming them, or, when asked, skipped
and counted; never dropped silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from loopworks.errors import ConfigurationError, InputError

if TYPE_CHECKING:
    from loopworks.files import InputFile

__all__ = [
    "LabeledData",
    "SPLITS",
    "TEXT_COLUMNS",
    "find_text_column",
    "input_files",
    "labeled_data_from_frame",
    "read_labeled_data",
    "read_table",
]

SPLITS = ("train", "validation", "test")
#: Tried in order when no text column is given.
TEXT_COLUMNS = ("review_body", "review_text", "text", "Review Text", "content", "body")
#: Tried in order when neither a label nor a rating column is given.
LABEL_COLUMNS = ("label_id", "label", "sentiment", "class", "class_name")
_PROCESSED_PARTS = ("train", "validation", "test")


@dataclass
class LabeledData:
    """Texts with label ids and a train/validation/test assignment.

    Attributes:
        texts: Object array of texts.
        labels: Label ids (int64).
        split: Split name per row (``train``, ``validation`` or ``test``).
        classes: Class names; label id ``i`` is ``classes[i]``.
        source: Where the rows came from (file, folder, feature group or query).
        text_column: The column the texts came from.
        label_column: The column the labels came from.
        skipped: Rows left out, by reason (only when skipping was asked for).
        split_origin: ``data`` when the source said which split each row is in, else
            ``random`` (stratified, seeded).
    """

    texts: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    classes: tuple[str, ...]
    source: str
    text_column: str
    label_column: str
    skipped: dict[str, int] = field(default_factory=dict)
    split_origin: str = "data"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def part(self, name: str) -> tuple[list[str], np.ndarray]:
        """Texts and label ids of one split."""
        mask = self.split == name
        return self.texts[mask].tolist(), self.labels[mask]

    def counts(self) -> dict[str, int]:
        """Rows per split."""
        return {name: int((self.split == name).sum()) for name in SPLITS}

    def class_counts(self) -> dict[str, int]:
        """Rows per class name, over all splits."""
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return dict(zip(self.classes, (int(c) for c in counts), strict=True))

    def sha256(self) -> str:
        """Content hash over the (split, text, label) rows, whatever their order.

        Rows are sorted first, so a feature-store query that returns the same rows in
        another order gives the same hash.
        """
        rows = pd.DataFrame({"split": self.split, "text": self.texts,
                             "label": self.labels}).sort_values(["split", "text", "label"])
        joined = "\x1e".join(rows["split"].astype(str) + "\x1f" + rows["text"].astype(str)
                             + "\x1f" + rows["label"].astype(str))
        return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def input_files(spec: str | Path) -> list[InputFile]:
    """The input files of a file, folder or glob; a processing job's output folder gives the
    files of its ``train/``, ``validation/`` and ``test/`` parts only (not its rejects file
    nor its report).

    Raises:
        InputError: Nothing matches, or a format cannot be told from a file name.
    """
    from loopworks.files import discover_inputs

    return discover_inputs(_input_specs(spec))


def _input_specs(spec: str | Path) -> list[str]:
    path = Path(str(spec))
    if path.is_dir() and all((path / part).is_dir() for part in _PROCESSED_PARTS):
        return [str(path / part) for part in _PROCESSED_PARTS]
    return [str(spec)]


def read_table(spec: str | Path) -> pd.DataFrame:
    """Read a CSV, JSON Lines or Parquet file, folder or glob into one DataFrame.

    A processing job's output folder is read from its ``train/``, ``validation/`` and
    ``test/`` parts only (see :func:`input_files`).

    Raises:
        InputError: Nothing matches, a format cannot be told, or a file is malformed.
    """
    from loopworks.files import read_table as read_files

    return read_files(_input_specs(spec)).to_pandas()


def find_text_column(columns: Sequence[str], given: str | None, source: str) -> str:
    """The text column: the one given, or the first of :data:`TEXT_COLUMNS` present.

    Raises:
        InputError: The given column is missing, or none of the usual names is present;
            names the source and lists its columns.
    """
    return _column(columns, given, TEXT_COLUMNS, source, "text", "--text-column")


def _column(columns: Sequence[str], given: str | None, candidates: Sequence[str], source: str,
            role: str, option: str) -> str:
    listed = ", ".join(map(str, columns)) or "(none)"
    if given is not None:
        if given not in columns:
            raise InputError(f"{source}: no {role} column {given!r}; its columns are: {listed}",
                             file=source, column=given)
        return given
    for name in candidates:
        if name in columns:
            return name
    raise InputError(f"{source}: no {role} column found (looked for "
                     f"{', '.join(candidates)}); its columns are: {listed}; pass {option}",
                     file=source, column=None)


def read_labeled_data(
    input: str | Path | None = None, *, feature_group: str | None = None,
    query: str | None = None, text_column: str | None = None,
    label_column: str | None = None, rating_column: str | None = None,
    classes: Sequence[str] = ("negative", "neutral", "positive"),
    split_column: str = "split_type", split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0, skip_invalid: bool = False, home: str | Path | None = None,
) -> LabeledData:
    """Read labeled rows from a file/folder/glob, a feature group or a feature-store query.

    Args:
        input: A CSV/JSON Lines/Parquet file, folder or glob (e.g. a processing job's output).
        feature_group: Read the latest record per id of this feature group.
        query: Or any SQL over the feature store (DuckDB; each group is a table).
        text_column: Column with the text (default: the first of review_body, review_text,
            text, ... present).
        label_column: Column with class names, label ids or sentiment -1/0/1 (default:
            the first of label_id, label, sentiment, class, class_name present).
        rating_column: Use a 1-5 star rating column instead: 1-2 is class 0, 3 is class 1,
            4-5 is class 2 (needs three classes).
        classes: Class names for label ids 0..k-1.
        split_column: Column saying which split a row belongs to (train/validation/test);
            when absent, rows are split at random, stratified by class.
        split: train/validation/test fractions for the random split.
        seed: Seed of the random split.
        skip_invalid: Skip (and count) rows with empty text or an unusable label instead of
            failing on them.
        home: loopworks home folder for the feature store.

    Returns:
        The :class:`LabeledData`.

    Raises:
        ConfigurationError: Not exactly one source given, or bad split fractions.
        InputError: A column is missing, or rows are empty or unlabeled (naming them).
        NotFoundError: No feature group of that name.
    """
    given = [x for x in (input, feature_group, query) if x is not None]
    if len(given) != 1:
        raise ConfigurationError("give exactly one of an input file, a feature group or a "
                                 "query")
    if input is not None:
        frame, source = read_table(input), str(input)
    else:
        from loopworks.featurestore import FeatureStore

        source = f"feature group {feature_group!r}" if query is None else f"query {query!r}"
        with FeatureStore(home=home) as store:
            if feature_group is not None:
                # Checks the name (SQL-safe) and that the group exists, with a clear error.
                name = store.feature_group(feature_group).spec.name
                query = f'SELECT * FROM "{name}_latest"'
            assert query is not None
            frame = store.query(query)
    return labeled_data_from_frame(frame, source=source, text_column=text_column,
                                   label_column=label_column, rating_column=rating_column,
                                   classes=classes, split_column=split_column, split=split,
                                   seed=seed, skip_invalid=skip_invalid)


def labeled_data_from_frame(
    frame: pd.DataFrame, *, source: str = "data", text_column: str | None = None,
    label_column: str | None = None, rating_column: str | None = None,
    classes: Sequence[str] = ("negative", "neutral", "positive"),
    split_column: str = "split_type", split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0, skip_invalid: bool = False,
) -> LabeledData:
    """Turn a DataFrame into :class:`LabeledData` (see :func:`read_labeled_data`)."""
    classes = tuple(str(c) for c in classes)
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6 or split[0] <= 0:
        raise ConfigurationError(f"split fractions must be three non-negative numbers "
                                 f"summing to 1 with some training rows, got {split}")
    columns = [str(c) for c in frame.columns]
    text_col = find_text_column(columns, text_column, source)
    if rating_column is not None:
        label_col = _column(columns, rating_column, (), source, "rating", "--rating-column")
    else:
        label_col = _column(columns, label_column, LABEL_COLUMNS, source, "label",
                            "--label-column or --rating-column")
    if len(frame) == 0:
        raise InputError(f"{source}: holds no rows", file=source)

    texts = frame[text_col]
    empty = (texts.isna() | texts.astype(str).str.strip().eq("")).to_numpy()
    if rating_column is not None:
        labels, bad = _labels_from_rating(frame[label_col], classes, source)
    else:
        labels, bad = _label_ids(frame[label_col], label_col, classes)
    problems = {"empty_text": empty, "bad_label": bad & ~empty}
    skipped: dict[str, int] = {}
    keep = ~(empty | bad)
    for reason, mask in problems.items():
        if not mask.any():
            continue
        if not skip_invalid:
            what = (f"empty text in column {text_col!r}" if reason == "empty_text" else
                    f"a label in column {label_col!r} that is not one of "
                    f"{_accepted(classes, rating_column is not None)}")
            sample = frame[label_col][mask].head(5).tolist() if reason == "bad_label" else None
            raise InputError(
                f"{source}: {int(mask.sum())} row(s) with {what}: rows {_rows(mask)} "
                f"(counting data rows from 0)" + (f"; values such as {sample}" if sample else "")
                + "; fix them or skip them with --skip-invalid",
                file=source, column=text_col if reason == "empty_text" else label_col,
                rows=np.flatnonzero(mask)[:10].tolist())
        skipped[reason] = int(mask.sum())
    texts_arr = texts[keep].astype(str).to_numpy(dtype=object)
    labels = labels[keep]
    if labels.size == 0:
        raise InputError(f"{source}: no usable rows left", file=source)

    split_names, origin = _splits(frame, split_column, keep, labels, split, seed, source)
    return LabeledData(texts=texts_arr, labels=labels.astype(np.int64), split=split_names,
                       classes=classes, source=source, text_column=text_col,
                       label_column=label_col, skipped=skipped, split_origin=origin)


def _accepted(classes: tuple[str, ...], rating: bool) -> str:
    if rating:
        return "the ratings 1-5"
    ids = f"0..{len(classes) - 1}"
    extra = " or sentiment -1/0/1" if len(classes) == 3 else ""
    return f"the class names ({', '.join(classes)}), label ids {ids}{extra}"


def _rows(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(r)) for r in rows[:10])
    return shown + (f" and {rows.size - 10} more" if rows.size > 10 else "")


def _label_ids(values: pd.Series, column: str,
               classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Label ids and a mask of rows whose label is unusable."""
    k = len(classes)
    as_text = values.astype("string").str.strip()
    by_name = as_text.map({name: i for i, name in enumerate(classes)})
    numbers = pd.to_numeric(values if values.dtype.kind in "iuf" else as_text, errors="coerce")
    whole = numbers.notna() & (numbers == numbers.round())
    numeric = numbers.where(whole)
    # Sentiment (-1/0/1) when the column says so or holds negatives; label ids otherwise.
    is_sentiment = k == 3 and (column == "sentiment" or bool((numeric < 0).any()))
    ids = numeric + 1 if is_sentiment else numeric
    ids = ids.where((ids >= 0) & (ids < k))
    labels = by_name.astype("Float64").fillna(ids.astype("Float64"))
    bad = labels.isna().to_numpy(dtype=bool)
    return labels.fillna(0).to_numpy(dtype=np.int64), bad


def _labels_from_rating(values: pd.Series, classes: tuple[str, ...],
                        source: str) -> tuple[np.ndarray, np.ndarray]:
    if len(classes) != 3:
        raise ConfigurationError(f"{source}: a rating column maps to three classes "
                                 f"(negative, neutral, positive), but {len(classes)} are given")
    ratings = pd.to_numeric(values, errors="coerce")
    usable = ratings.notna() & (ratings == ratings.round()) & ratings.between(1, 5)
    ids = np.sign(ratings.where(usable, 3).to_numpy(dtype=np.float64) - 3) + 1
    return ids.astype(np.int64), ~usable.to_numpy(dtype=bool)


def _splits(frame: pd.DataFrame, split_column: str, keep: np.ndarray, labels: np.ndarray,
            fractions: tuple[float, float, float], seed: int,
            source: str) -> tuple[np.ndarray, str]:
    if split_column in frame.columns:
        given = frame[split_column].astype("string").str.strip().str.lower().to_numpy(
            dtype=object, na_value="")[keep]
        given = np.where(given == "val", "validation", given)
        unknown = sorted(set(given.tolist()) - set(SPLITS))
        if unknown:
            raise InputError(f"{source}: column {split_column!r} holds {unknown[:5]}; expected "
                             f"train, validation or test", file=source, column=split_column)
        missing = [s for s in SPLITS if not (given == s).any()]
        if missing:
            raise InputError(
                f"{source}: column {split_column!r} has no {' or '.join(missing)} rows; the "
                "model needs held-out rows for calibration (validation) and for the report "
                f"(test); pass another --split-column or drop it", file=source,
                column=split_column)
        return given.astype(object), "data"
    return _random_split(labels, fractions, seed), "random"


def _random_split(labels: np.ndarray, fractions: tuple[float, float, float],
                  seed: int) -> np.ndarray:
    """Stratified split: each class is shuffled and cut at the same fractions."""
    rng = np.random.default_rng(seed)
    out = np.empty(labels.shape[0], dtype=object)
    cuts = np.cumsum(fractions)[:2]
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        rows = rows[rng.permutation(rows.size)]
        bounds = np.round(cuts * rows.size).astype(int)
        out[rows[: bounds[0]]] = "train"
        out[rows[bounds[0]: bounds[1]]] = "validation"
        out[rows[bounds[1]:]] = "test"
    return out
