"""loopworks: the human side of ML data, self-hosted.

Labeling jobs, human review of model predictions, feature engineering at scale and a
feature store. See ``loopworks --help`` and the README.
"""

from __future__ import annotations

__version__ = "0.1.0"

from loopworks.errors import LoopworksError  # noqa: E402
from loopworks.processing import JobReport, ProcessingConfig, run_processing_job  # noqa: E402
from loopworks.settings import Settings, load_settings  # noqa: E402

__all__ = [
    "JobReport",
    "LoopworksError",
    "ProcessingConfig",
    "Settings",
    "__version__",
    "load_settings",
    "run_processing_job",
]
