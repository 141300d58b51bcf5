"""The job's global decisions, made once on the light key columns of every row.

Duplicate ids, class balancing and the train/validation/test split need to see all rows,
so the driver makes them on (id, label, reason) alone before any text is tokenized; the
workers then tokenize only what is kept. Every decision depends on the seed and each row's
id, never on row order, file order or worker count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["SPLIT_NAMES", "SplitPlan", "make_plan", "stable_uniform"]

SPLIT_NAMES = ("train", "validation", "test")


def _hash_ids(ids: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """64-bit keyed hash of each id: stable across runs, machines and row order."""
    key = hashlib.blake2b(f"{purpose}:{seed}".encode(), digest_size=8).hexdigest()
    return pd.util.hash_array(ids, hash_key=key, categorize=False)


def stable_uniform(ids: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """A number in [0, 1) per id, fixed for a given seed and purpose."""
    return (_hash_ids(ids, seed, purpose) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass
class SplitPlan:
    """Per-row outcome, aligned with the concatenated key rows.

    Attributes:
        split: -1 when the row is not output, else an index into :data:`SPLIT_NAMES`.
        reason: Reject reason per row (``None`` when the row is usable).
        balanced_out: True where a usable row was dropped by class balancing.
        review_id: Replacement ids (``--lab-compat`` numbers kept rows), else ``None``.
    """

    split: np.ndarray
    reason: np.ndarray
    balanced_out: np.ndarray
    review_id: np.ndarray | None


def make_plan(
    keys: pa.Table,
    *,
    split: tuple[float, float, float],
    seed: int,
    balance: bool,
    stratify: str,
    lab_compat: bool,
) -> SplitPlan:
    """Decide duplicates, balancing and splits for every row.

    Args:
        keys: Columns ``review_id`` (string), ``label_id`` (int8, null if unusable) and
            ``reason`` (string, null if usable), in input order.
        split: Train/validation/test percentages summing to 100.
        seed: Seed for balancing and splitting.
        balance: Downsample every class to the size of the smallest.
        stratify: ``hash`` (per-id hash; a review keeps its split as the input grows) or
            ``exact`` (exact per-class proportions, as scikit-learn's stratified split).
        lab_compat: Number kept rows 0..n-1 in input order, as the course lab did.

    Returns:
        The :class:`SplitPlan`.
    """
    n = keys.num_rows
    ids = keys.column("review_id").to_numpy(zero_copy_only=False).astype(object)
    labels = keys.column("label_id").fill_null(-1).to_numpy(zero_copy_only=False)
    reason = keys.column("reason").to_numpy(zero_copy_only=False).astype(object)
    usable = pd.isna(reason)
    new_ids = None
    if lab_compat:
        new_ids = np.full(n, None, dtype=object)
        new_ids[usable] = np.arange(int(usable.sum())).astype(str)
        ids = np.where(usable, new_ids, ids)
    else:
        dup = np.zeros(n, dtype=bool)
        dup[usable] = pd.Series(ids[usable]).duplicated(keep="first").to_numpy()
        reason[dup] = "duplicate_id"
        usable &= ~dup
    selected = usable.copy()
    if balance and usable.any():
        selected = _balance(ids, labels, usable, seed)
    split_codes = np.full(n, -1, dtype=np.int8)
    rows = np.flatnonzero(selected)
    if stratify == "exact":
        split_codes[rows] = _exact_split(ids[rows], labels[rows], split, seed)
    else:
        u = stable_uniform(ids[rows], seed, "split")
        train, validation, _ = (p / 100.0 for p in split)
        split_codes[rows] = np.where(u < train, 0, np.where(u < train + validation, 1, 2))
    return SplitPlan(split_codes, reason, usable & ~selected, new_ids)


def _balance(ids: np.ndarray, labels: np.ndarray, usable: np.ndarray, seed: int) -> np.ndarray:
    """Keep, per class, the ``min class size`` rows with the smallest seeded id hash."""
    rows = np.flatnonzero(usable)
    frame = pd.DataFrame({"row": rows, "label": labels[rows],
                          "h": _hash_ids(ids[rows], seed, "balance")})
    smallest = int(frame["label"].value_counts().min())
    keep = frame.sort_values(["label", "h"], kind="stable").groupby("label").head(smallest)
    selected = np.zeros(len(ids), dtype=bool)
    selected[keep["row"].to_numpy()] = True
    return selected


def _exact_split(ids: np.ndarray, labels: np.ndarray, split: tuple[float, float, float],
                 seed: int) -> np.ndarray:
    """Stratified split with exact per-class proportions, like the lab's two-step split.

    The lab split off the holdout (``1 - train``) first and then divided it into
    validation and test, both with scikit-learn's stratified ``train_test_split``; the same
    float arithmetic is kept so that counts match it (6,153 rows give 5,537/307/309).
    Rows are put in seeded-hash order first so the result does not depend on input order.
    """
    from sklearn.model_selection import train_test_split

    order = np.argsort(_hash_ids(ids, seed, "order"), kind="stable")
    codes = np.empty(len(ids), dtype=np.int8)
    train_pct, validation_pct, test_pct = (p / 100.0 for p in split)
    holdout_pct = 1.0 - train_pct
    positions = np.arange(len(ids))[order]
    strata = labels[order]
    if holdout_pct <= 0 or len(ids) < 2:
        codes[:] = 0
        return codes
    if train_pct <= 0:
        train_idx, hold_idx = np.array([], dtype=int), positions
    else:
        train_idx, hold_idx = train_test_split(positions, test_size=holdout_pct,
                                               stratify=strata, random_state=seed)
    codes[train_idx] = 0
    if test_pct <= 0 or validation_pct <= 0:
        codes[hold_idx] = 1 if validation_pct > 0 else 2
        return codes
    val_idx, test_idx = train_test_split(hold_idx, test_size=test_pct / holdout_pct,
                                         stratify=labels[hold_idx], random_state=seed)
    codes[val_idx] = 1
    codes[test_idx] = 2
    return codes
