"""Automated labeling rounds: people label a sample, a model labels what it is sure of.

A job created with ``JobSpec.auto_label`` starts with a seeded random sample open for people
(a validation sample, 20% of the items below 5,000 and 10% above, and a first training
sample) and every other item *held* (never handed out). Once no item is open any more,
:meth:`AutoLabeler.advance` runs one round:

1. the human answers so far are consolidated (majority vote; Dawid-Skene with several
   workers); an item with a known answer (``gold`` in its manifest line) keeps that;
2. a :class:`~loopworks.models.SentimentModel` (TF-IDF n-grams, optionally with sentence
   embeddings: ``features``) is trained on the human-labeled training items (never the
   validation ones) and calibrated on the validation items;
3. the confidence threshold is chosen on the validation items with
   :func:`~loopworks.labeling.activelearning.choose_threshold`: the lowest one at which
   the validation items machine-labeled so far (see below) reach the target accuracy with
   a Wilson lower bound (one-sided, held with probability ``assurance``, default 0.95), and
   this round's share of them reaches it on its own. The
   model is judged against people's labels, and people err too: with gold items (they
   join the validation sample first) the job measures how often people are right (or
   takes ``annotator_accuracy``) and stops their mistakes counting as the model's; on
   the gold items themselves it is judged against the known answer;
4. the held items at or above it get the model's label (``human-annotated: no`` in the
   output, with the confidence and the model version saved in the model registry);
5. the next batch for people is the most uncertain of the remaining held items
   (:func:`~loopworks.labeling.activelearning.select_for_people`, optionally diverse),
   within the budget; they open, people label them, and the next round follows.

The job completes through its ordinary lifecycle once nothing is held or open. When the
budget of human-labeled items is spent, the items the model is still unsure of are marked
failed with the reason (they keep their input fields in the output), so the job completes
and the output says why they have no label.

Why validation items are *covered*: each round machine-labels the easy items it is sure of
and sends the most uncertain to people, so the held items left for later rounds are not a
random sample any more. A threshold chosen on all validation items would average their
accuracy over easy items the held pool no longer has. So the validation items go through
the same process as the held items: each one the round's model and threshold would have
labeled is marked covered by that round (with whether that model was right), the same
share of the rest as the batch is of the held items, most uncertain first, is marked as
gone to people, and a later round's threshold is chosen among the uncovered ones, which
stay like the held pool. The covered ones keep counting in the bound
with their earlier verdicts: the validation items covered so far are a random sample of
everything the machine labeled, so the bound holds the target for all machine labels of the
job, and it tightens as they grow; each round's new share must also reach the target on its
own (see :func:`~loopworks.labeling.activelearning.choose_threshold`).

Rounds are safe to start from several threads or processes at once: a round is claimed by
inserting its row (the primary key lets only one claim win), the model is trained outside
any transaction, and the labels are written in one transaction that checks the claim. A
claim left by a crashed process is taken over after ``stale_seconds``.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConfigurationError, LoopworksError, NotFoundError
from loopworks.labeling.activelearning import choose_threshold, select_for_people, z_for
from loopworks.labeling.jobs import JobSpec, JobStatus, LabelingJobs
from loopworks.labeling.schema import (
    ItemState,
    answers,
    auto_items,
    auto_rounds,
    items,
    machine_labels,
)

__all__ = ["AutoLabeler", "RoundReport", "batch_size", "model_name"]

log = logging.getLogger(__name__)

#: Items handed to people per round when the spec gives no batch size: 5% of the items,
#: at least 100.
BATCH_SHARE = 0.05
MIN_BATCH = 100


def batch_size(spec: JobSpec, n_items: int) -> int:
    """Items people get per round: the spec's ``batch_size``, else 5% of the items (at
    least 100)."""
    chosen = (spec.auto_label or {}).get("batch_size")
    return int(chosen) if chosen else max(MIN_BATCH, int(round(n_items * BATCH_SHARE)))


def model_name(job: str) -> str:
    """The model-registry name of a job's automated-labeling models (``autolabel-<job>``)."""
    return ("autolabel-" + re.sub(r"[^A-Za-z0-9._-]", "-", job))[:100]


@dataclass(frozen=True)
class RoundReport:
    """What one automated-labeling round did.

    Attributes:
        job: The job's name.
        round: 1, 2, ...
        human_labels: Human-labeled items the round learned from (training + validation).
        training_items: Of those, the training items the model was fitted on.
        machine_labels: Held items this round's model labeled.
        sent_to_people: Held items opened for people (the next batch).
        failed: Held items marked failed because the budget is spent.
        held_left: Items still held after the round.
        threshold: The confidence threshold (None: no threshold held the target; the model
            labeled nothing).
        validation_accuracy: Accuracy of the validation items machine-labeled so far: those
            earlier rounds covered and those at or above this threshold (None with no
            threshold).
        validation_items: How many validation items that is.
        validation_pool: Validation items this threshold was chosen among (those no earlier
            round covered).
        lower_bound: The Wilson lower bound of that accuracy (what met the target).
        annotator_accuracy: How often people were taken to be right when judging the model
            against their labels (1: always; below 1 when measured on gold items or given).
        gold_answers: Human-labeled gold items behind that figure.
        target_accuracy: The job's target.
        model_version: ``autolabel-<job>:<version>`` in the model registry (None when the
            human labels held fewer than two classes and no model was trained).
        created_at: When the round's labels were written.
        seconds: Wall seconds the round took to train and run its model.
        cpu_seconds: CPU seconds of this process meanwhile (all its threads: the model's
            and, on a busy server, any other work it did at the same time).
    """

    job: str
    round: int
    human_labels: int
    training_items: int
    machine_labels: int
    sent_to_people: int
    failed: int
    held_left: int
    threshold: float | None
    validation_accuracy: float | None
    validation_items: int
    validation_pool: int
    lower_bound: float | None
    annotator_accuracy: float | None
    gold_answers: int | None
    target_accuracy: float
    model_version: str | None
    created_at: str
    seconds: float | None = None
    cpu_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return asdict(self)


@dataclass
class _Plan:
    """A round's decisions, computed outside any transaction."""

    machine: list[tuple[int, str, float]]  # (item id, label, confidence)
    to_people: list[int]
    to_fail: list[int]
    #: Validation items this round covers: (id, was the model right), or (id, None) for
    #: those that stand for the items sent to people.
    covered: list[tuple[int, bool | None]]
    figures: dict[str, Any]


class AutoLabeler:
    """Runs automated-labeling rounds of the jobs in a :class:`LabelingJobs` database.

    Args:
        jobs: The labeling jobs.
        home: loopworks home whose model registry keeps each round's model (default:
            ``LOOPWORKS_HOME`` or ``~/.loopworks``).
        stale_seconds: A round claimed this long ago and never finished (its process died)
            may be taken over.
    """

    def __init__(self, jobs: LabelingJobs, *, home: str | Path | None = None,
                 stale_seconds: float = 600.0) -> None:
        self.jobs = jobs
        self.home = home
        self.stale_seconds = stale_seconds

    # ----------------------------------------------------------------- reading
    def uses_auto_label(self, job: str) -> bool:
        """True when the job was created with automated labeling (False when there is no
        such job)."""
        from loopworks.metadata import READ_ONLY

        try:
            with self.jobs.engine.connect().execution_options(**READ_ONLY) as conn, \
                    conn.begin():
                return self.jobs.spec_of(self.jobs.job_row(conn, job)).auto_label is not None
        except NotFoundError:
            return False

    def due(self, job: str) -> bool:
        """True when the job uses automated labeling, is in progress, has held items and
        no open one: :meth:`advance` would run a round (cheap; for hooks after answers).

        A read: on SQLite it neither waits for nor takes the write lock (every answer of
        every job asks)."""
        from loopworks.metadata import READ_ONLY

        with self.jobs.engine.connect().execution_options(**READ_ONLY) as conn, conn.begin():
            row = self.jobs.job_row(conn, job)
            spec = self.jobs.spec_of(row)
            if spec.auto_label is None or JobStatus(row.status) is not JobStatus.IN_PROGRESS:
                return False
            return self._ready(conn, row.id)

    def rounds(self, job: str) -> list[RoundReport]:
        """The job's finished rounds, in order."""
        with self.jobs.engine.connect() as conn:
            row = self.jobs.job_row(conn, job)
            spec = self.jobs.spec_of(row)
            found = conn.execute(sa.select(auto_rounds).where(
                auto_rounds.c.job_id == row.id, auto_rounds.c.state == "done")
                .order_by(auto_rounds.c.round)).all()
        target = float((spec.auto_label or {}).get("target_accuracy", 0.0))
        return [RoundReport(
            job=job, round=r.round, human_labels=r.human_labels,
            training_items=r.training_items, machine_labels=r.machine_labels,
            sent_to_people=r.sent_to_people, failed=r.failed, held_left=r.held_left,
            threshold=r.threshold, validation_accuracy=r.validation_accuracy,
            validation_items=r.validation_items, validation_pool=r.validation_pool,
            lower_bound=r.lower_bound, annotator_accuracy=r.annotator_accuracy,
            gold_answers=r.gold_answers, target_accuracy=target, model_version=r.model_version,
            created_at=r.created_at.isoformat(), seconds=r.seconds, cpu_seconds=r.cpu_seconds)
            for r in found]

    # ----------------------------------------------------------------- a round
    def advance(self, job: str) -> RoundReport | None:
        """Run the job's next round if one is due (no item open, some held).

        Returns:
            The round's report, or None when no round was due, the job is not in progress,
            or another thread or process is running this round.

        Raises:
            ConfigurationError: The job was not created with automated labeling.
            NotFoundError: No such job.
        """
        claim = self._claim(job)
        if claim is None:
            return None
        job_id, number, token, spec = claim
        started, cpu = time.perf_counter(), time.process_time()
        try:
            plan = self._plan(job_id, number, spec, job)
        except BaseException:
            self._release(job_id, number, token)
            raise
        plan.figures.update(seconds=round(time.perf_counter() - started, 3),
                            cpu_seconds=round(time.process_time() - cpu, 3))
        return self._write(job, job_id, number, token, spec, plan)

    def _ready(self, conn: sa.Connection, job_id: int) -> bool:
        def any_in(state: int) -> bool:
            return conn.execute(sa.select(items.c.id).where(
                items.c.job_id == job_id, items.c.state == state).limit(1)).first() is not None
        return not any_in(ItemState.OPEN) and any_in(ItemState.HELD)

    def _claim(self, job: str) -> tuple[int, int, str, JobSpec] | None:
        now = utcnow()
        token = secrets.token_hex(16)
        try:
            with self.jobs.transaction() as conn:
                row = self.jobs.job_row(conn, job)
                spec = self.jobs.spec_of(row)
                if spec.auto_label is None:
                    raise ConfigurationError(f"job {job!r} was not created with automated "
                                             "labeling (--auto-label)", setting="auto_label")
                if self.jobs.settle(conn, row, spec, now) is not JobStatus.IN_PROGRESS:
                    return None
                if not self._ready(conn, row.id):
                    return None
                last = conn.execute(sa.select(auto_rounds.c.round, auto_rounds.c.state,
                                              auto_rounds.c.token, auto_rounds.c.started_at)
                                    .where(auto_rounds.c.job_id == row.id)
                                    .order_by(auto_rounds.c.round.desc()).limit(1)).first()
                if last is not None and last.state == "running":
                    if now - last.started_at < timedelta(seconds=self.stale_seconds):
                        return None  # someone else is running it
                    taken = conn.execute(auto_rounds.update().where(
                        auto_rounds.c.job_id == row.id, auto_rounds.c.round == last.round,
                        auto_rounds.c.token == last.token).values(
                            token=token, started_at=now)).rowcount
                    return (row.id, last.round, token, spec) if taken == 1 else None
                number = (last.round if last is not None else 0) + 1
                conn.execute(auto_rounds.insert().values(
                    job_id=row.id, round=number, state="running", token=token,
                    started_at=now))
                return row.id, number, token, spec
        except sa.exc.IntegrityError:
            return None  # another claim of this round won

    def _release(self, job_id: int, number: int, token: str) -> None:
        """Give a claim back after a failure, so the next call can retry at once."""
        with self.jobs.transaction() as conn:
            conn.execute(auto_rounds.delete().where(
                auto_rounds.c.job_id == job_id, auto_rounds.c.round == number,
                auto_rounds.c.token == token, auto_rounds.c.state == "running"))

    def _plan(self, job_id: int, number: int, spec: JobSpec, job: str) -> _Plan:
        settings = spec.auto_label or {}
        target = float(settings["target_accuracy"])
        with self.jobs.engine.connect() as conn:
            all_items = conn.execute(sa.select(items.c.id, items.c.source, items.c.state)
                                     .where(items.c.job_id == job_id)
                                     .order_by(items.c.seq)).all()
            asked_data = dict(conn.execute(sa.select(items.c.id, items.c.data).join(
                auto_items, auto_items.c.item_id == items.c.id).where(
                items.c.job_id == job_id, items.c.state == ItemState.LABELED)).all())
            asked = {r.item_id: r for r in conn.execute(sa.select(auto_items).where(
                auto_items.c.job_id == job_id))}
            given = conn.execute(sa.select(answers.c.item_id, answers.c.worker_id,
                                           answers.c.answer).where(
                answers.c.job_id == job_id)).all()
        source = {r.id: r.source for r in all_items}
        labeled = {r.id for r in all_items if r.state == ItemState.LABELED}
        held = [r.id for r in all_items if r.state == ItemState.HELD]
        human = self._human_labels(given, labeled & set(asked), spec)
        train_ids = [i for i in human if asked[i].role == "training"]
        valid_ids = [i for i in human if asked[i].role == "validation"]
        pool_ids = [i for i in valid_ids if asked[i].covered_round is None]
        classes = list(spec.labels)
        gold = self._gold(human, asked_data, spec)
        z = z_for(float(settings.get("assurance", 0.95)))
        people, gold_answers = self._annotator_accuracy(settings, human, gold, z)
        prior = [(bool(asked[i].covered_correct), i in gold) for i in valid_ids
                 if asked[i].covered_round is not None and asked[i].covered_correct is not None]
        seed = int(settings.get("seed", 0)) + number
        best = {**human, **gold}  # a known answer beats people's
        model, present = self._train(spec, [source[i] for i in train_ids],
                                     [best[i] for i in train_ids],
                                     [source[i] for i in valid_ids],
                                     [best[i] for i in valid_ids], seed,
                                     previous=(job, number))
        figures: dict[str, Any] = {
            "human_labels": len(human), "training_items": len(train_ids),
            "validation_pool": len(pool_ids), "threshold": None,
            "validation_accuracy": None, "validation_items": 0, "lower_bound": None,
            "annotator_accuracy": people, "gold_answers": gold_answers, "model_version": None}
        machine: list[tuple[int, str, float]] = []
        covered: list[tuple[int, bool | None]] = []
        held_probs = np.zeros((len(held), len(classes)))
        pool_probs = np.zeros((len(pool_ids), len(classes)))
        if model is not None:
            held_probs = self._proba(model, present, classes, [source[i] for i in held])
            pool_probs = self._proba(model, present, classes, [source[i] for i in pool_ids])
            pool_pred = pool_probs.argmax(axis=1)
            pool_conf = pool_probs.max(axis=1) if len(pool_ids) else np.zeros(0)
            # Judged against the known answer where there is one, else against people's.
            correct = np.array([classes[p] == gold.get(i, human[i]) for p, i in
                                zip(pool_pred, pool_ids, strict=True)], dtype=bool)
            chosen = choose_threshold(
                pool_conf, correct, target, prior_items=len(prior),
                prior_correct=sum(ok for ok, _ in prior), annotator_accuracy=people,
                exact=np.array([i in gold for i in pool_ids], dtype=bool),
                prior_exact=sum(known for _, known in prior), z=z)
            figures.update(threshold=chosen.value,
                           validation_accuracy=chosen.validation_accuracy,
                           validation_items=chosen.validation_items,
                           lower_bound=chosen.lower_bound)
            if chosen.value is not None:
                covered = [(i, bool(ok)) for i, c, ok in
                           zip(pool_ids, pool_conf, correct, strict=True) if c >= chosen.value]
                conf = held_probs.max(axis=1)
                pred = held_probs.argmax(axis=1)
                machine = [(held[j], classes[int(pred[j])], float(conf[j]))
                           for j in np.flatnonzero(conf >= chosen.value)]
        taken = {item_id for item_id, _, _ in machine}
        left = [j for j, item_id in enumerate(held) if item_id not in taken]
        budget = settings.get("budget")
        room = len(left) if budget is None else max(0, int(budget) - len(asked))
        k = min(batch_size(spec, len(all_items)), len(left), room)
        if k and model is not None:
            features = None
            if settings.get("diversity"):
                features = self._diversity_space(model, [source[held[j]] for j in left])
            picks = select_for_people(held_probs[left], k, features=features,
                                      diversity=bool(settings.get("diversity")), seed=seed)
            to_people = [held[left[int(p)]] for p in picks]
        else:  # no model yet (a class missing from the human labels): a random batch
            order = np.random.default_rng(seed).permutation(len(left))[:k]
            to_people = [held[left[int(p)]] for p in order]
        covered += self._mirror_people(pool_ids, pool_probs, covered, model is not None,
                                       k / len(left) if left else 0.0, seed)
        # Budget spent: the items the model is still unsure of will never get a label.
        to_fail = [held[j] for j in left] if k == 0 else []
        if model is not None:
            from loopworks.models.registry import ModelCard, ModelRegistry

            card = ModelRegistry(self.home).save(model, model_name(job), ModelCard(
                name=model_name(job), classes=list(present),
                features=model.describe_features(),
                calibration={"method": model.calibration},
                training_data={"source": f"labeling-job/{job}", "round": number,
                               "training_items": len(train_ids),
                               "validation_items": len(valid_ids)},
                metrics={k_: v for k_, v in figures.items() if k_ != "model_version"}))
            figures["model_version"] = f"{card.name}:{card.version}"
        return _Plan(machine, to_people, to_fail, covered, figures)

    @staticmethod
    def _diversity_space(model: Any, texts: list[str]) -> Any:
        """What k-means spreads a batch over: the sentence embeddings when the model has
        them (dense, and close for texts that mean the same), else its TF-IDF rows."""
        if not hasattr(model, "estimator"):  # a fine-tuned encoder: the sentence vectors
            from loopworks.embeddings.features import SentenceEmbeddingFeatures

            return SentenceEmbeddingFeatures().transform(texts)
        union = model.estimator.named_steps["features"]
        parts = dict(union.transformer_list)
        if "embedding" in parts:
            return parts["embedding"].transform(texts)
        return union.transform(texts)

    @staticmethod
    def _gold(human: dict[int, str], data: dict[int, str], spec: JobSpec) -> dict[int, str]:
        """The known answers of the human-labeled items that have one."""
        from loopworks.labeling.jobs import gold_label

        found = {i: gold_label(json.loads(d), spec.labels) for i, d in data.items()
                 if i in human}
        return {i: g for i, g in found.items() if g is not None}

    @staticmethod
    def _annotator_accuracy(settings: dict[str, Any], human: dict[int, str],
                            gold: dict[int, str], z: float) -> tuple[float, int]:
        """How often people are right, for the threshold: the job's
        ``annotator_accuracy`` when given; else measured on the human-labeled gold items
        (the upper end of its interval at the job's assurance, see
        :func:`~loopworks.labeling.activelearning.annotator_accuracy_bound`); else 1
        (people taken as always right). Returns it and the gold answers it rests on."""
        from loopworks.labeling.activelearning import annotator_accuracy_bound

        given = settings.get("annotator_accuracy")
        if given is not None:
            return float(given), len(gold)
        right = sum(human[i] == g for i, g in gold.items())
        return annotator_accuracy_bound(right, len(gold), z), len(gold)

    @staticmethod
    def _mirror_people(pool_ids: list[int], pool_probs: np.ndarray,
                       covered: list[tuple[int, bool | None]], by_margin: bool, share: float,
                       seed: int) -> list[tuple[int, bool | None]]:
        """The validation items people would get in this round: the same share of the
        uncovered pool as the batch is of the held items left, chosen the same way (most
        uncertain first; at random without a model). They leave the pool, as the batch
        leaves the held items, so the pool stays like the held items."""
        done = {i for i, _ in covered}
        rest = [j for j, i in enumerate(pool_ids) if i not in done]
        m = min(len(rest), int(round(len(rest) * share)))
        if not m:
            return []
        if by_margin:
            picks = select_for_people(pool_probs[rest], m)
        else:
            picks = np.random.default_rng(seed).permutation(len(rest))[:m]
        return [(pool_ids[rest[int(p)]], None) for p in picks]

    def _human_labels(self, given: Sequence[Any], done: set[int],
                      spec: JobSpec) -> dict[int, str]:
        """One label per human-labeled item: Dawid-Skene where items have several answers,
        else each item's one answer (with no item answered twice, Dawid-Skene has nothing
        to learn the workers from and can fold every label into the commonest class)."""
        import pandas as pd

        from loopworks.labeling.consolidation import consolidate

        rows = [(a.item_id, a.worker_id, json.loads(a.answer)) for a in given
                if a.item_id in done]
        if not rows:
            return {}
        frame = pd.DataFrame(rows, columns=["item", "worker", "label"])
        overlap = frame["worker"].nunique() > 1 and frame["item"].duplicated().any()
        method = "dawid-skene" if overlap else "majority-vote"
        result = consolidate(frame, method, classes=spec.labels)
        return {int(i): str(label) for i, label in
                zip(result.labels["item"], result.labels["label"], strict=True)}

    def _train(self, spec: JobSpec, texts: list[str], labels: list[str],
               valid_texts: list[str], valid_labels: list[str], seed: int,
               previous: tuple[str, int] | None = None) -> tuple[Any, list[str]]:
        """A calibrated model on the classes the human training labels hold (None when
        fewer than two). A fine-tuned encoder continues from the job's model of the round
        before (``previous``: job and this round's number) when there is one."""
        from loopworks.models import SentimentModel

        present = [c for c in spec.labels if c in set(labels)]
        if len(present) < 2:
            return None, present
        index = {c: i for i, c in enumerate(present)}
        features = (spec.auto_label or {}).get("features") or "word+char"
        if features == "fine-tuned":
            from loopworks.models.finetuned import FineTunedModel

            model: Any = FineTunedModel(present, seed=seed)
            start = self._last_round_model(*previous) if previous else None
            model.fit(texts, np.array([index[x] for x in labels], dtype=np.int64),
                      start=start if isinstance(start, FineTunedModel) else None)
        else:
            model = SentimentModel(present, seed=seed, features=features)
            model.fit(texts, np.array([index[x] for x in labels], dtype=np.int64))
        keep = [j for j, x in enumerate(valid_labels) if x in index]
        if keep:
            model.calibrate([valid_texts[j] for j in keep],
                            np.array([index[valid_labels[j]] for j in keep], dtype=np.int64))
        return model, present

    def _last_round_model(self, job: str, number: int) -> Any:
        """The job's model saved by round ``number - 1`` of this job (None when there is
        none, e.g. a first round, or it cannot be read)."""
        from loopworks.models.registry import ModelRegistry

        registry = ModelRegistry(self.home)
        name = model_name(job)
        try:
            card = registry.card(name)
        except LoopworksError:
            return None
        made_by = card.training_data or {}
        if made_by.get("source") != f"labeling-job/{job}" or made_by.get("round") != number - 1:
            return None
        try:
            return registry.load(name, card.version)
        except LoopworksError as exc:
            log.warning("round %s of %s starts its model afresh: %s", number, job, exc)
            return None

    @staticmethod
    def _proba(model: Any, present: list[str], classes: list[str],
               texts: list[str]) -> np.ndarray:
        """Probabilities over all the job's classes (0 for classes the model never saw)."""
        out = np.zeros((len(texts), len(classes)))
        if texts:
            out[:, [classes.index(c) for c in present]] = model.predict_proba(texts)
        return out

    def _write(self, job: str, job_id: int, number: int, token: str, spec: JobSpec,
               plan: _Plan) -> RoundReport | None:
        now = utcnow()
        budget = (spec.auto_label or {}).get("budget")
        with self.jobs.transaction() as conn:
            mine = sa.select(auto_rounds.c.round).where(
                auto_rounds.c.job_id == job_id, auto_rounds.c.round == number,
                auto_rounds.c.token == token, auto_rounds.c.state == "running")
            if self.jobs.on_postgres:
                mine = mine.with_for_update()
            if conn.execute(mine).first() is None:
                return None  # taken over as stale; the other claim writes the round
            still = self._still_held(conn, [i for i, _, _ in plan.machine]
                                     + plan.to_people + plan.to_fail)
            machine = [m for m in plan.machine if m[0] in still]
            for start in range(0, len(machine), 5000):
                chunk = machine[start:start + 5000]
                conn.execute(machine_labels.insert(), [
                    {"item_id": i, "job_id": job_id, "label": label, "confidence": conf,
                     "model_version": plan.figures["model_version"], "round": number,
                     "created_at": now} for i, label, conf in chunk])
                self._set_state(conn, [i for i, _, _ in chunk], ItemState.LABELED)
            people = [i for i in plan.to_people if i in still]
            if people:
                conn.execute(auto_items.insert(), [{"item_id": i, "job_id": job_id,
                                                    "role": "training", "round": number}
                                                   for i in people])
                self._set_state(conn, people, ItemState.OPEN)
            failed = [i for i in plan.to_fail if i in still]
            if failed:
                reason = (f"not labeled: the automated-labeling budget of {budget:,} "
                          f"human-labeled items is spent and no model was confident enough "
                          f"(last round {number})")
                self._set_state(conn, failed, ItemState.FAILED, reason)
            for verdict in (True, False, None):
                ids = [i for i, ok in plan.covered if ok is verdict]
                for start in range(0, len(ids), 5000):
                    conn.execute(auto_items.update().where(
                        auto_items.c.item_id.in_(ids[start:start + 5000]),
                        auto_items.c.covered_round.is_(None)).values(
                            covered_round=number, covered_correct=verdict))
            held_left = conn.execute(sa.select(sa.func.count()).select_from(items).where(
                items.c.job_id == job_id, items.c.state == ItemState.HELD)).scalar_one()
            figures = {**plan.figures, "machine_labels": len(machine),
                       "sent_to_people": len(people), "failed": len(failed),
                       "held_left": int(held_left)}
            conn.execute(auto_rounds.update().where(
                auto_rounds.c.job_id == job_id, auto_rounds.c.round == number).values(
                    state="done", created_at=now, **figures))
            row = self.jobs.job_row(conn, job)
            if JobStatus(row.status) is JobStatus.IN_PROGRESS:
                self.jobs.complete_if_done(conn, row, spec, now)
        return RoundReport(job=job, round=number, target_accuracy=float(
            (spec.auto_label or {})["target_accuracy"]), created_at=now.isoformat(),
            **figures)

    def _still_held(self, conn: sa.Connection, ids: list[int]) -> set[int]:
        """Which of these items are still held (a deadline may have failed them since)."""
        found: set[int] = set()
        for start in range(0, len(ids), 5000):
            query = sa.select(items.c.id).where(items.c.id.in_(ids[start:start + 5000]),
                                                items.c.state == ItemState.HELD)
            if self.jobs.on_postgres:
                query = query.with_for_update()
            found.update(conn.execute(query).scalars())
        return found

    @staticmethod
    def _set_state(conn: sa.Connection, ids: list[int], state: int,
                   reason: str | None = None) -> None:
        values: dict[str, Any] = {"state": state}
        if reason is not None:
            values["failure_reason"] = reason
        for start in range(0, len(ids), 5000):
            conn.execute(items.update().where(items.c.id.in_(ids[start:start + 5000]),
                                              items.c.state == ItemState.HELD).values(**values))
