"""Feature engineering at scale: raw reviews to tokenized, split features.

Start with :func:`run_processing_job` and :class:`ProcessingConfig`; ``loopworks process``
is the same thing on the command line.
"""

from __future__ import annotations

from loopworks.processing.config import ProcessingConfig, parse_split
from loopworks.processing.job import check_processing_job, new_job_report, run_processing_job
from loopworks.processing.report import FileJobStore, JobReport, token_length_stats
from loopworks.processing.runner import JobRunner
from loopworks.processing.semantics import ColumnNames, sentiment_from_rating
from loopworks.processing.tokenize import TextEncoder, load_tokenizer
from loopworks.processing.writers import read_output

__all__ = [
    "ColumnNames",
    "FileJobStore",
    "JobReport",
    "JobRunner",
    "ProcessingConfig",
    "TextEncoder",
    "check_processing_job",
    "load_tokenizer",
    "new_job_report",
    "parse_split",
    "read_output",
    "run_processing_job",
    "sentiment_from_rating",
    "token_length_stats",
]
