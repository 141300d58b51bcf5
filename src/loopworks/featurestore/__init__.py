"""Feature store: feature groups with an online store (latest per id) and an offline history.

Start with :class:`FeatureStore`; ``loopworks fs`` is the same on the command line.
"""

from __future__ import annotations

from loopworks.featurestore.definitions import (
    FeatureDefinition,
    FeatureType,
    load_feature_definitions,
)
from loopworks.featurestore.group import FeatureGroup, IngestReport
from loopworks.featurestore.labels import LabelEvent, LabelSource, ingest_label_events
from loopworks.featurestore.registry import FeatureGroupSpec
from loopworks.featurestore.sql import training_set_from_manifest
from loopworks.featurestore.store import FeatureStore

__all__ = [
    "FeatureDefinition",
    "FeatureGroup",
    "FeatureGroupSpec",
    "FeatureStore",
    "FeatureType",
    "IngestReport",
    "LabelEvent",
    "LabelSource",
    "ingest_label_events",
    "load_feature_definitions",
    "training_set_from_manifest",
]
