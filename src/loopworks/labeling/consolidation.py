"""Consolidate crowd answers into one label per item, with worker quality estimates.

Majority vote, Dawid-Skene (one confusion matrix per worker) and one-coin Dawid-Skene (one
accuracy per worker) are implemented here with NumPy: every EM step is a handful of
``np.bincount`` calls over integer-coded items, workers and labels, so a table of 25,000
answers consolidates in well under a second. GLAD and MACE come from crowd-kit when that
optional package is installed (``pip install "loopworks[crowd]"``).

Start with :func:`consolidate`; :func:`read_answers` loads an answer table from CSV or
Parquet and :func:`consolidate_multilabel` handles answers that are sets of labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopworks.errors import (
    ConfigurationError,
    InputError,
    MissingDependencyError,
    ValidationError,
)
from loopworks.files import read_table

__all__ = [
    "METHODS",
    "ConsolidationResult",
    "MultilabelResult",
    "consolidate",
    "consolidate_multilabel",
    "read_answers",
]

METHODS = ("majority-vote", "dawid-skene", "one-coin", "glad", "mace")
_CROWDKIT_METHODS = {"glad": "GLAD", "mace": "MACE"}
_TINY = 1e-12  # floor for probabilities before taking logs
_LISTLIKE = (list, tuple, set, frozenset, np.ndarray)


@dataclass(frozen=True)
class ConsolidationResult:
    """What :func:`consolidate` found.

    Attributes:
        labels: One row per item, columns named as in the input: the item, the consolidated
            label, ``confidence`` (posterior probability of that label; vote share for majority
            vote), ``n_answers``, ``agreement`` (share of the item's answers equal to the label)
            and ``tie`` (True when the best labels were tied and label order decided).
        worker_quality: One row per worker: the worker, ``n_answers``, ``accuracy`` (the
            method's estimate: expected accuracy from the confusion matrix for Dawid-Skene,
            the coin for one-coin, agreement with the consolidated labels for majority vote,
            expected accuracy under the posteriors for GLAD/MACE), ``agreement`` (share of
            answers equal to the consolidated label) and, with gold, ``n_gold`` and
            ``gold_accuracy``.
        method: The method used.
        iterations: EM iterations run (0 for majority vote).
        converged: False when EM stopped at ``max_iter`` before reaching ``tol``.
        classes: The label order (ties go to the earliest label).
        class_priors: Estimated share of each class among the items.
        gold_accuracy: Accuracy of the consolidated labels on the gold items, if gold given.
        confusion: Dawid-Skene only: ``worker``, ``true``, ``answer``, ``probability``.
    """

    labels: pd.DataFrame
    worker_quality: pd.DataFrame
    method: str
    iterations: int
    converged: bool
    classes: list[Any]
    class_priors: dict[Any, float]
    gold_accuracy: float | None = None
    confusion: pd.DataFrame | None = None


@dataclass(frozen=True)
class MultilabelResult:
    """What :func:`consolidate_multilabel` found.

    Attributes:
        labels: One row per item: the item, ``labels`` (sorted tuple of selected labels,
            possibly empty) and ``n_answers`` (workers who answered the item).
        confidence: One row per (item, label) chosen by anyone: ``votes``, ``confidence``
            (votes / n_answers) and ``selected``.
    """

    labels: pd.DataFrame
    confidence: pd.DataFrame


@dataclass(frozen=True)
class CodedAnswers:
    """An answer table as integer codes, one entry per answer."""

    item: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    items: pd.Index
    workers: pd.Index
    classes: pd.Index

    def votes(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Items x classes matrix of (weighted) answer counts."""
        k = len(self.classes)
        flat = np.bincount(self.item * k + self.label, weights=weights,
                           minlength=len(self.items) * k)
        return flat.reshape(len(self.items), k).astype(float)


def read_answers(path: str | Path, *, item: str = "item", worker: str = "worker",
                 label: str = "label") -> pd.DataFrame:
    """Read an answer table from CSV or Parquet.

    Args:
        path: A ``.csv``, ``.tsv``, ``.parquet`` or ``.pq`` file.
        item: Column holding the item id.
        worker: Column holding the worker id.
        label: Column holding the answer.

    Returns:
        The three columns, in that order, one row per answer.

    Raises:
        InputError: The file is missing, unreadable, of an unknown type, or lacks a column.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".tsv", ".parquet", ".pq"}:
        raise InputError(f"{path}: unknown answer file type {suffix!r}; use .csv, .tsv or "
                         ".parquet", file=str(path))
    if not path.is_file():
        raise InputError(f"{path}: answer file not found", file=str(path))
    try:
        frame = read_table(str(path), infer_types=True).to_pandas()
    except InputError as exc:
        raise InputError(f"{path}: cannot read answers ({exc})",
                         **{**exc.fields, "file": str(path)}) from None
    _require_columns(frame, [item, worker, label], source=str(path))
    return frame[[item, worker, label]]


def consolidate(answers: pd.DataFrame, method: str = "dawid-skene", *, item: str = "item",
                worker: str = "worker", label: str = "label",
                gold: pd.DataFrame | None = None, classes: Sequence[Any] | None = None,
                max_iter: int = 500, tol: float = 1e-4,
                smoothing: float = 0.01) -> ConsolidationResult:
    """Consolidate crowd answers into one label per item.

    Args:
        answers: One row per answer (an item, the worker, the label the worker gave).
        method: One of :data:`METHODS`. ``glad`` and ``mace`` need crowd-kit.
        item: Column holding the item id.
        worker: Column holding the worker id.
        label: Column holding the answer.
        gold: Known labels for some items, with the ``item`` and ``label`` columns; used
            only to measure accuracy (of the result and of each worker), never to fit.
        classes: All labels in tie-break order. Default: the labels seen, sorted.
        max_iter: Most EM iterations.
        tol: EM stops once no item's posterior moves by more than this.
        smoothing: Pseudo-count added to every confusion-matrix cell (or to the right and
            wrong counts of one-coin), so a worker who never saw a class is not certain.

    Returns:
        A :class:`ConsolidationResult`.

    Raises:
        ConfigurationError: Unknown method or invalid numeric setting.
        InputError: Missing columns, an empty table or empty cells.
        ValidationError: A worker answered an item twice, or a label is not in ``classes``.
        MissingDependencyError: ``glad``/``mace`` without crowd-kit installed.
    """
    if method not in METHODS:
        raise ConfigurationError(f"unknown consolidation method {method!r}; choose one of "
                                 f"{', '.join(METHODS)}", setting="method",
                                 valid_values=list(METHODS))
    if max_iter < 1 or tol <= 0 or smoothing < 0:
        raise ConfigurationError("max_iter must be >= 1, tol > 0 and smoothing >= 0",
                                 setting="max_iter/tol/smoothing")
    coded = code_answers(answers, item, worker, label, classes)
    votes = coded.votes()
    n_answers = votes.sum(axis=1)
    iterations, converged = 0, True
    accuracy: np.ndarray | None = None
    confusion: pd.DataFrame | None = None
    if method == "majority-vote" or len(coded.classes) == 1:
        posterior = votes / n_answers[:, None]
    elif method in _CROWDKIT_METHODS:
        posterior, iterations = _crowdkit(coded, method)
    else:
        fit = _dawid_skene if method == "dawid-skene" else _one_coin
        posterior, accuracy, matrices, iterations, converged = fit(
            coded, votes / n_answers[:, None], smoothing, tol, max_iter)
        if method == "dawid-skene":
            confusion = _confusion_frame(matrices, coded, worker)
    chosen = posterior.argmax(axis=1)  # first maximum: ties go to the earliest class
    top = posterior[np.arange(len(chosen)), chosen]
    labels = pd.DataFrame({
        item: coded.items, label: coded.classes.take(chosen), "confidence": top,
        "n_answers": n_answers.astype(int),
        "agreement": votes[np.arange(len(chosen)), chosen] / n_answers,
        "tie": np.isclose(posterior, top[:, None], rtol=0, atol=1e-12).sum(axis=1) > 1,
    })
    n_worker = np.bincount(coded.worker, minlength=len(coded.workers))
    agrees = coded.label == chosen[coded.item]
    agreement = np.bincount(coded.worker, weights=agrees, minlength=len(coded.workers)) / n_worker
    if accuracy is None:  # majority vote: agreement; GLAD/MACE: expected under posteriors
        accuracy = agreement if method not in _CROWDKIT_METHODS else np.bincount(
            coded.worker, weights=posterior[coded.item, coded.label]) / n_worker
    quality = pd.DataFrame({worker: coded.workers, "n_answers": n_worker,
                            "accuracy": accuracy, "agreement": agreement})
    gold_accuracy = None if gold is None else _score_gold(gold, coded, labels, quality, item,
                                                          label)
    return ConsolidationResult(
        labels=labels, worker_quality=quality, method=method, iterations=iterations,
        converged=converged, classes=list(coded.classes),
        class_priors=dict(zip(coded.classes, posterior.mean(axis=0).tolist(), strict=True)),
        gold_accuracy=gold_accuracy, confusion=confusion)


def _dawid_skene(coded: CodedAnswers, posterior: np.ndarray, smoothing: float, tol: float,
                 max_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """EM for the Dawid-Skene model, started from the majority-vote shares."""
    n_workers, k = len(coded.workers), len(coded.classes)
    flat = coded.worker * k + coded.label
    iteration, converged = 0, False
    while iteration < max_iter and not converged:
        iteration += 1
        # M-step: conf[w, a, t] = P(worker w answers a | true class t).
        counts: np.ndarray = np.stack([
            np.bincount(flat, weights=posterior[coded.item, t], minlength=n_workers * k)
            for t in range(k)], axis=-1)
        counts = counts.reshape(n_workers, k, k) + smoothing
        conf = counts / np.maximum(counts.sum(axis=1, keepdims=True), _TINY)
        priors = np.maximum(posterior.mean(axis=0), _TINY)
        # E-step: log P(true = t | answers) up to a constant, one bincount per class.
        log_conf = np.log(np.maximum(conf[coded.worker, coded.label], _TINY))
        log_lik = np.log(priors) + np.stack([
            np.bincount(coded.item, weights=log_conf[:, t], minlength=len(coded.items))
            for t in range(k)], axis=1)
        updated = _normalise_logs(log_lik)
        converged = bool(np.abs(updated - posterior).max() < tol)
        posterior = updated
    accuracy = conf[:, np.arange(k), np.arange(k)] @ posterior.mean(axis=0)
    return posterior, accuracy, conf, iteration, converged


def _one_coin(coded: CodedAnswers, posterior: np.ndarray, smoothing: float, tol: float,
              max_iter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """EM for one-coin Dawid-Skene: a worker is right with probability p, else uniform."""
    n_workers, k = len(coded.workers), len(coded.classes)
    n_worker = np.bincount(coded.worker, minlength=n_workers)
    iteration, converged = 0, False
    while iteration < max_iter and not converged:
        iteration += 1
        right = np.bincount(coded.worker, weights=posterior[coded.item, coded.label],
                            minlength=n_workers)
        coin = np.clip((right + smoothing) / (n_worker + 2 * smoothing), _TINY, 1 - _TINY)
        log_right, log_wrong = np.log(coin), np.log((1 - coin) / (k - 1))
        # Every answer adds log_wrong to every class, plus the difference to its own label.
        base = np.bincount(coded.item, weights=log_wrong[coded.worker],
                           minlength=len(coded.items))
        bonus = coded.votes(weights=(log_right - log_wrong)[coded.worker])
        log_lik = np.log(np.maximum(posterior.mean(axis=0), _TINY)) + base[:, None] + bonus
        updated = _normalise_logs(log_lik)
        converged = bool(np.abs(updated - posterior).max() < tol)
        posterior = updated
    return posterior, coin, np.empty(0), iteration, converged


def _normalise_logs(log_lik: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so nothing underflows."""
    scaled = np.exp(log_lik - log_lik.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def _crowdkit(coded: CodedAnswers, method: str) -> tuple[np.ndarray, int]:
    """Run crowd-kit's GLAD or MACE on the coded answers; posteriors in class order."""
    try:
        from crowdkit import aggregation
    except ImportError:
        raise MissingDependencyError("crowd-kit", "crowd",
                                     f"the {method!r} consolidation method") from None
    model = getattr(aggregation, _CROWDKIT_METHODS[method])()
    data = pd.DataFrame({"task": coded.item, "worker": coded.worker, "label": coded.label})
    with warnings.catch_warnings():
        # crowd-kit 1.4 calls pandas APIs that pandas 3 deprecates; nothing the caller can fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        probas = model.fit_predict_proba(data)
    k = len(coded.classes)
    probas = probas.reindex(index=range(len(coded.items)), columns=range(k), fill_value=0.0)
    iterations = len(getattr(model, "loss_history_", [])) or int(getattr(model, "n_iter", 0))
    return probas.to_numpy(dtype=float), iterations


def _confusion_frame(conf: np.ndarray, coded: CodedAnswers, worker: str) -> pd.DataFrame:
    """Long table of the confusion matrices: worker, true label, answer, probability."""
    n_workers, k = len(coded.workers), len(coded.classes)
    w, answer, true = np.unravel_index(np.arange(n_workers * k * k), (n_workers, k, k))
    return pd.DataFrame({worker: coded.workers.take(w), "true": coded.classes.take(true),
                         "answer": coded.classes.take(answer),
                         "probability": conf.reshape(-1)})


def _score_gold(gold: pd.DataFrame, coded: CodedAnswers, labels: pd.DataFrame,
                quality: pd.DataFrame, item: str, label: str) -> float | None:
    """Add gold columns to ``quality``; return the accuracy of ``labels`` on gold items."""
    _require_columns(gold, [item, label], source="gold")
    if gold[item].duplicated().any():
        first = gold.loc[gold[item].duplicated(), item].tolist()[0]
        raise ValidationError(f"gold has more than one label for item {first!r}", item=first)
    truth = gold.set_index(item)[label].reindex(coded.items)
    known = truth.notna().to_numpy()
    truth_values = truth.to_numpy()
    correct = labels[label].to_numpy() == truth_values
    answered = coded.classes.take(coded.label).to_numpy() == truth_values[coded.item]
    on_gold = known[coded.item]
    n_gold = np.bincount(coded.worker, weights=on_gold, minlength=len(coded.workers))
    right = np.bincount(coded.worker, weights=answered & on_gold, minlength=len(coded.workers))
    quality["n_gold"] = n_gold.astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        quality["gold_accuracy"] = np.where(n_gold > 0, right / np.maximum(n_gold, 1), np.nan)
    return float(correct[known].mean()) if known.any() else None


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Raise InputError naming the source and every missing column."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
                         f"found {', '.join(map(repr, map(str, frame.columns)))}",
                         file=source, missing=missing)


def _check_answers(answers: pd.DataFrame, columns: list[str], *, allow_null: str = "") -> None:
    """Answers have the columns, at least one row and no empty cells (except ``allow_null``)."""
    if not isinstance(answers, pd.DataFrame):
        raise InputError(f"answers must be a pandas DataFrame, not {type(answers).__name__}",
                         file="answers")
    _require_columns(answers, columns, source="answers")
    if answers.empty:
        raise InputError("answers: the table has no rows", file="answers")
    for column in columns:
        nulls = answers[column].isna()
        if column != allow_null and nulls.any():
            raise InputError(f"answers: {int(nulls.sum())} empty {column!r} cell(s), first at "
                             f"row {answers.index[nulls.to_numpy()][0]!r}; drop or fill them",
                             file="answers", column=column)


def code_answers(answers: pd.DataFrame, item: str, worker: str, label: str,
                 classes: Sequence[Any] | None) -> CodedAnswers:
    """Validate an answer table and turn it into integer codes."""
    _check_answers(answers, [item, worker, label])
    duplicated = answers.duplicated([item, worker])
    if duplicated.any():
        first_item, first_worker = answers.loc[duplicated, [item, worker]].iloc[0].tolist()
        raise ValidationError(
            f"worker {first_worker!r} answered item {first_item!r} more than once; keep one "
            f"answer per worker and item (e.g. answers.drop_duplicates([{item!r}, {worker!r}], "
            "keep='last'))", item=first_item, worker=first_worker)
    item_codes, items = pd.factorize(answers[item], sort=True)
    worker_codes, workers = pd.factorize(answers[worker], sort=True)
    if classes is None:
        try:
            label_codes, class_index = pd.factorize(answers[label], sort=True)
        except TypeError:  # mixed types do not sort; order them by their text instead
            order = sorted(pd.unique(answers[label]), key=str)
            class_index = pd.Index(order, dtype=object)
            label_codes = class_index.get_indexer(answers[label])
    else:
        class_index = pd.Index(list(classes))
        label_codes = class_index.get_indexer(answers[label])
        if (label_codes < 0).any():
            unknown = answers[label][label_codes < 0].tolist()[0]
            raise ValidationError(f"answer label {unknown!r} is not one of the classes "
                                  f"{list(classes)!r}", label=unknown,
                                  valid_values=list(classes))
    return CodedAnswers(item_codes, worker_codes, np.asarray(label_codes), pd.Index(items),
                  pd.Index(workers), pd.Index(class_index))


def consolidate_multilabel(answers: pd.DataFrame, *, item: str = "item",
                           worker: str = "worker", label: str = "label",
                           threshold: float = 0.5) -> MultilabelResult:
    """Consolidate answers that are sets of labels, one label at a time.

    A label is selected for an item when at least ``threshold`` of the workers who answered
    the item chose it (so with the default 0.5, a 1-1 split selects the label).

    Args:
        answers: Either one row per (item, worker) whose label cell is a list, tuple or set
            (an empty one means "no label applies"), or one row per (item, worker, label)
            with an empty label cell for a worker who chose nothing.
        item: Column holding the item id.
        worker: Column holding the worker id.
        label: Column holding the label (or the collection of labels).
        threshold: Share of the item's workers needed to select a label, in (0, 1].

    Returns:
        A :class:`MultilabelResult`.

    Raises:
        ConfigurationError: ``threshold`` outside (0, 1].
        InputError: Missing columns, an empty table or empty item/worker cells.
    """
    if not 0 < threshold <= 1:
        raise ConfigurationError(f"threshold must be in (0, 1], got {threshold}",
                                 setting="threshold")
    _check_answers(answers, [item, worker, label], allow_null=label)
    frame = answers[[item, worker, label]]
    if frame[label].map(lambda v: isinstance(v, _LISTLIKE)).any():
        as_lists = frame[label].map(lambda v: list(v) if isinstance(v, _LISTLIKE) else v)
        frame = frame.assign(**{label: as_lists}).explode(label)
    n_answers = frame.groupby(item, sort=True)[worker].nunique().rename("n_answers")
    chosen = frame.dropna(subset=[label]).drop_duplicates()
    votes = chosen.groupby([item, label], sort=True).size().rename("votes").reset_index()
    votes["confidence"] = votes["votes"] / n_answers.reindex(votes[item]).to_numpy()
    votes["selected"] = votes["confidence"] >= threshold - 1e-12
    picked = votes[votes["selected"]].groupby(item)[label].agg(_sorted_tuple)
    labels = n_answers.reset_index()
    labels.insert(1, "labels", labels[item].map(picked))
    labels["labels"] = labels["labels"].map(lambda v: v if isinstance(v, tuple) else ())
    return MultilabelResult(labels=labels, confidence=votes)


def _sorted_tuple(values: pd.Series) -> tuple[Any, ...]:
    """The values as a tuple, sorted (by text when the types do not compare)."""
    try:
        return tuple(sorted(values))
    except TypeError:
        return tuple(sorted(values, key=str))
