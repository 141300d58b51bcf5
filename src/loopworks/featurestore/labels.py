"""Labels as features: one event record for every label people or a model give an item.

A labeling job's consolidated label, automated labeling's model label and a review flow's
answer all land in a feature group as :class:`LabelEvent` rows with the same columns, so one
group can hold the labels of a job, of its model and of the reviews that followed, and a
training set reads them alike. A relabel is a new event at a later time, never an update
of the old one, so "train on the labels as they were on date T" is an ordinary
point-in-time join.

The columns, besides the record id and the event time (named by each group):

========================  ============  =================================================
``label``                 String        the class
``label_index``           Integral      its index in the job's or flow's label set
``confidence``            Fractional    how sure the source is (consolidation, votes, model)
``agreement``             Fractional    share of the people who agree (null for a model)
``source``                String        ``job``, ``flow`` or ``model``
``job``                   String        the labeling job (a flow's own job for reviews)
``flow``                  String        the review flow (null unless reviewed)
``human_loop``            String        the review's human loop (null unless reviewed)
``method``                String        how the label was chosen (``dawid-skene``, ...)
``model_version``         String        the model that labeled it (source ``model``)
``model_label``           String        the prediction people reviewed (source ``flow``)
``model_confidence``      Fractional    that prediction's confidence
``agrees_with_model``     Boolean       whether people kept the model's label
``human_annotated``       Boolean       whether people (not a model) chose the label
``workers``               Integral      how many workers of a job answered
``worker_ids``            String        their names, comma-separated
``reviewers``             Integral      how many reviewers of a flow answered
``reviewer_ids``          String        their names, comma-separated
========================  ============  =================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loopworks.errors import ConfigurationError
from loopworks.featurestore.definitions import EVENT_TIME_TYPE, FeatureDefinition, FeatureType

if TYPE_CHECKING:
    from loopworks.featurestore.store import FeatureStore

__all__ = ["LABEL_FEATURES", "LabelEvent", "LabelSource", "ingest_label_events",
           "label_events_table"]


class LabelSource(StrEnum):
    """Who chose a label."""

    JOB = "job"
    """The workers of a labeling job (their answers consolidated)."""
    FLOW = "flow"
    """The reviewers of a review flow, looking at a model's prediction."""
    MODEL = "model"
    """Automated labeling's model, sure enough to label without people."""


_S, _I, _F, _B = (FeatureType.STRING, FeatureType.INTEGRAL, FeatureType.FRACTIONAL,
                  FeatureType.BOOLEAN)
#: The features of every label event besides its record id and event time, in order.
LABEL_FEATURES = [FeatureDefinition(name, kind) for name, kind in (
    ("label", _S), ("label_index", _I), ("confidence", _F), ("agreement", _F),
    ("source", _S), ("job", _S), ("flow", _S), ("human_loop", _S), ("method", _S),
    ("model_version", _S), ("model_label", _S), ("model_confidence", _F),
    ("agrees_with_model", _B), ("human_annotated", _B), ("workers", _I), ("worker_ids", _S),
    ("reviewers", _I), ("reviewer_ids", _S))]


@dataclass(frozen=True)
class LabelEvent:
    """One label given to one item at one time, with where it came from.

    Attributes:
        record_id: The item's id (the feature group's record id).
        time: When the label was given (the event time).
        label: The class.
        label_index: Its index in the label set.
        confidence: How sure the source is, in [0, 1].
        source: Who chose it: a job's workers, a flow's reviewers or a model.
        job: The labeling job it belongs to.
        annotators: The people whose answers made the label (a job's workers or a flow's
            reviewers, by ``source``); none for a model.
        agreement: Share of those people who agree; ``None`` when not measured.
        method: How the label was chosen (consolidation method, vote, ``auto-label ...``).
        flow: The review flow, for source ``flow``.
        human_loop: The human loop, for source ``flow``.
        model_version: The model that chose the label, for source ``model``.
        model_label: The prediction the reviewers looked at, for source ``flow``.
        model_confidence: That prediction's confidence.
    """

    record_id: str
    time: datetime
    label: str
    label_index: int
    confidence: float
    source: LabelSource
    job: str
    annotators: tuple[str, ...] = ()
    agreement: float | None = None
    method: str = ""
    flow: str | None = None
    human_loop: str | None = None
    model_version: str | None = None
    model_label: str | None = None
    model_confidence: float | None = None

    def features(self) -> dict[str, Any]:
        """The event's values of :data:`LABEL_FEATURES`, by name."""
        reviewed = self.source is LabelSource.FLOW
        people = ",".join(self.annotators)
        return {
            "label": self.label, "label_index": self.label_index,
            "confidence": float(self.confidence), "agreement": self.agreement,
            "source": self.source.value, "job": self.job, "flow": self.flow,
            "human_loop": self.human_loop, "method": self.method,
            "model_version": self.model_version, "model_label": self.model_label,
            "model_confidence": self.model_confidence,
            "agrees_with_model": None if self.model_label is None
            else self.label == self.model_label,
            "human_annotated": self.source is not LabelSource.MODEL,
            "workers": 0 if reviewed else len(self.annotators),
            "worker_ids": None if reviewed else people,
            "reviewers": len(self.annotators) if reviewed else 0,
            "reviewer_ids": people if reviewed else None,
        }


def label_events_table(events: Sequence[LabelEvent], *, record_id: str,
                       event_time: str) -> pa.Table:
    """Label events as rows: the record id, the event time, then :data:`LABEL_FEATURES`.

    Args:
        events: The events.
        record_id: Name of the record id column (the item's id field, e.g. ``review_id``).
        event_time: Name of the event time column.

    Raises:
        ConfigurationError: ``record_id`` or ``event_time`` names one of the label features
            (only ``human_loop``, which holds the same value, may key a group).
    """
    features = {d.name for d in LABEL_FEATURES}
    for role, name, taken in (("record id", record_id, features - {"human_loop"}),
                              ("event time", event_time, features | {record_id})):
        if name in taken:
            raise ConfigurationError(f"label events cannot use {name!r} as their {role}: it "
                                     "names another of their columns; choose another name",
                                     setting=role.replace(" ", "_"))
    rows = [e.features() for e in events]
    columns: dict[str, pa.Array] = {
        record_id: pa.array([e.record_id for e in events], pa.string()),
        event_time: pa.array([e.time for e in events], EVENT_TIME_TYPE)}
    for definition in LABEL_FEATURES:
        if definition.name != record_id:
            columns[definition.name] = pa.array([r[definition.name] for r in rows],
                                                definition.arrow_type)
    return pa.table(columns)


def ingest_label_events(store: FeatureStore, name: str, events: Sequence[LabelEvent], *,
                        record_id: str, event_time: str = "labeled_at", description: str = "",
                        tags: dict[str, str] | None = None) -> int:
    """Write label events into a feature group, created on first use.

    A group that exists keeps its own record id and event time names, and gains the label
    features it lacks (a group made by an earlier release), so labels from a job, its model
    and the reviews after can share one group.

    Args:
        store: The feature store.
        name: The feature group.
        events: The events; none writes nothing (and creates no group).
        record_id: Record id name of a new group.
        event_time: Event time name of a new group.
        description: Description of a new group.
        tags: Tags of a new group.

    Returns:
        How many events were written.

    Raises:
        ConfigurationError: The names clash with the label features.
        ValidationError: The group holds a feature of the same name with another type.
    """
    if not events:
        return 0
    table = label_events_table(events, record_id=record_id, event_time=event_time)
    group = store.get_or_create_feature_group(
        name, record_id=record_id, event_time=event_time, df=table,
        description=description, tags=tags)
    spec = group.spec
    if (spec.record_id, spec.event_time) != (record_id, event_time):
        table = label_events_table(events, record_id=spec.record_id,
                                   event_time=spec.event_time)
    known = {d.name for d in spec.definitions}
    missing = [d for d in LABEL_FEATURES if d.name not in known]
    if missing:
        group = group.add_features(missing)
    return group.ingest(table).rows
