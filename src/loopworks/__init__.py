"""loopworks: the human side of ML data, self-hosted.

Labeling jobs, human review of model predictions, feature engineering at scale and a
feature store. See ``loopworks --help`` and the README.
"""

from __future__ import annotations

__version__ = "0.1.0"

from loopworks.errors import LoopworksError  # noqa: E402
from loopworks.featurestore import (  # noqa: E402
    FeatureDefinition,
    FeatureGroup,
    FeatureStore,
    load_feature_definitions,
    training_set_from_manifest,
)
from loopworks.processing import JobReport, ProcessingConfig, run_processing_job  # noqa: E402
from loopworks.settings import Settings, load_settings  # noqa: E402

__all__ = [
    "FeatureDefinition",
    "FeatureGroup",
    "FeatureStore",
    "JobReport",
    "LoopworksError",
    "ProcessingConfig",
    "Settings",
    "__version__",
    "load_feature_definitions",
    "load_settings",
    "run_processing_job",
    "training_set_from_manifest",
]
