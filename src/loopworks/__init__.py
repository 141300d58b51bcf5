"""loopworks: the human side of ML data, self-hosted.

Labeling jobs, human review of model predictions, feature engineering at scale and a
feature store. ``loopworks.open(home=...)`` gives every service of a home, wired together
(:class:`Loopworks`); see ``loopworks --help`` and the README.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from loopworks.labeling.jobs import LabelingJobs
    from loopworks.labeling.spec import JobSpec, Task
    from loopworks.labeling.workforce import Role, Worker, Workforce
    from loopworks.review.flows import FlowDefinition, HumanLoop, HumanReview
    from loopworks.services import Loopworks, open

# The services load on first use: `import loopworks` (and every CLI command) stays quick.
_LAZY = {"Loopworks": "loopworks.services", "open": "loopworks.services",
         "LabelingJobs": "loopworks.labeling.jobs", "JobSpec": "loopworks.labeling.spec",
         "Task": "loopworks.labeling.spec", "Role": "loopworks.labeling.workforce",
         "Worker": "loopworks.labeling.workforce", "Workforce": "loopworks.labeling.workforce",
         "FlowDefinition": "loopworks.review.flows", "HumanLoop": "loopworks.review.flows",
         "HumanReview": "loopworks.review.flows"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'loopworks' has no attribute {name!r}")

__all__ = [
    "FeatureDefinition",
    "FeatureGroup",
    "FeatureStore",
    "FlowDefinition",
    "HumanLoop",
    "HumanReview",
    "JobReport",
    "JobSpec",
    "LabelingJobs",
    "Loopworks",
    "LoopworksError",
    "ProcessingConfig",
    "Role",
    "Settings",
    "Task",
    "Worker",
    "Workforce",
    "__version__",
    "load_feature_definitions",
    "load_settings",
    "open",
    "run_processing_job",
    "training_set_from_manifest",
]
