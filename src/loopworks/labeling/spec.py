"""A labeling job's settings (:class:`JobSpec`), statuses and the task a worker gets.

The spec is stored as JSON beside the job (see :func:`dump_spec`); ``status``,
``counts`` and ``failure_reason`` are filled in when a job is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from loopworks.clock import as_utc
from loopworks.errors import ConfigurationError
from loopworks.labeling.destinations import check_url
from loopworks.labeling.tasktypes import TaskType

__all__ = ["AUTO_LABEL_DEFAULTS", "DEFAULT_LIFETIME_SECONDS", "MAX_LIFETIME_SECONDS",
           "MAX_TIME_LIMIT_SECONDS", "MOVES", "SPEC_FIELDS", "JobSpec", "JobStatus", "Task",
           "dump_spec", "may_work_on", "validate_job_name"]

#: Ground Truth's default: tasks stay available for 10 days.
DEFAULT_LIFETIME_SECONDS = 10 * 24 * 3600
#: The longest a worker may hold one task: 7 days (Ground Truth's largest time limit).
MAX_TIME_LIMIT_SECONDS = 7 * 24 * 3600
#: The longest items may stay available: 100 years (a review flow's streaming job).
MAX_LIFETIME_SECONDS = 100 * 366 * 24 * 3600
#: Ground Truth's LabelingJobName: letters, digits and inner hyphens, at most 63; a review
#: flow's streaming job is ``review-`` + the flow's name, so streaming jobs may have 70.
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_STREAMING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,69}$")
#: Who may take a job's tasks, besides admins.
WORKER_ROLES = ("annotator", "reviewer")


def validate_job_name(name: object, *, streaming: bool = False) -> str:
    """The name itself, or ConfigurationError saying what a job name may hold (names end up
    in URLs, file names and SageMaker ARNs)."""
    pattern = _STREAMING_JOB_NAME if streaming else _JOB_NAME
    if not isinstance(name, str) or not pattern.match(name):
        shown = name if not isinstance(name, str) or len(name) <= 80 else name[:80] + "..."
        raise ConfigurationError(
            f"invalid job name {shown!r}: 1-63 letters, digits and hyphens, starting and "
            "ending with a letter or digit", setting="name")
    return name


class JobStatus(StrEnum):
    """Ground Truth's job statuses."""

    INITIALIZING = "Initializing"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


#: Automated labeling's settings and their defaults (``batch_size`` None: 5% of the items,
#: at least 100; ``budget`` None: no cap on human-labeled items).
AUTO_LABEL_DEFAULTS: dict[str, Any] = {"target_accuracy": 0.95, "batch_size": None,
                                       "budget": None, "diversity": False, "seed": 0,
                                       "annotator_accuracy": None, "features": "word+char",
                                       "assurance": 0.95}

#: The status changes a job may make; anything else raises ConflictError.
MOVES = {
    JobStatus.INITIALIZING: {JobStatus.IN_PROGRESS, JobStatus.FAILED},
    JobStatus.IN_PROGRESS: {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPING,
                            JobStatus.STOPPED},
    JobStatus.STOPPING: {JobStatus.STOPPED},
}


def _parse_time(value: str | datetime | None, setting: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"{setting} must be an ISO date and time, like "
                                 f"2025-06-30T18:00:00+00:00; got {value!r}",
                                 setting=setting) from None
    return as_utc(parsed).isoformat()


@dataclass
class JobSpec:
    """A labeling job's settings.

    ``availability_lifetime_seconds`` (default 10 days) and ``deadline`` (an ISO time) bound
    how long items stay available; the earlier wins. ``adaptive`` is
    ``{"target_confidence": float, "max_workers": int}`` or None. ``webhooks`` receive
    ``item.labeled`` and ``job.completed`` events signed with ``webhook_secret``.
    ``auto_label`` turns on automated labeling (text classification, at least 1,250 items):
    ``{"target_accuracy": 0.95, "batch_size": int | None, "budget": int | None,
    "diversity": bool, "seed": int}`` (see :mod:`loopworks.labeling.autolabel`); ``{}``
    takes the defaults. ``status``, ``created_at``, ``failure_reason`` and ``counts`` are
    filled in by :class:`LabelingJobs`.
    """

    name: str
    team: str
    labels: list[str]
    task_type: TaskType = TaskType.TEXT_CLASSIFICATION
    instructions: str = ""
    workers_per_item: int = 1
    time_limit_seconds: int = 300
    label_attribute: str = ""
    status: JobStatus = JobStatus.IN_PROGRESS
    created_at: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    availability_lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS
    deadline: str | None = None
    adaptive: dict[str, Any] | None = None
    webhooks: list[str] = field(default_factory=list)
    webhook_secret: str = ""
    failure_reason: str | None = None
    #: A streaming job (Ground Truth's term) never completes by itself: items keep arriving
    #: (human-review loops use one per flow) until it is stopped.
    streaming: bool = False
    auto_label: dict[str, Any] | None = None
    #: Who takes the job's tasks besides admins: ``annotator`` and/or ``reviewer``. Default:
    #: annotators; a review flow's job is for reviewers.
    roles: list[str] | None = None
    #: The Liquid task template (crowd-html elements; ``task.input`` is the item:
    #: ``taskObject`` and the manifest line's fields). A ``custom`` job needs one; a built-in
    #: task type with one shows it instead of the built-in page and reads its answer from the
    #: form (:func:`~loopworks.labeling.tasktypes.from_crowd_form`).
    template: str = ""
    #: At most this many items in flight at once (leased, or answered by some of the workers
    #: they want): Ground Truth's MaxConcurrentTaskCount. None: no cap.
    max_concurrent_items: int | None = None

    def __post_init__(self) -> None:
        validate_job_name(self.name, streaming=self.streaming)
        self.task_type = TaskType(self.task_type)
        self.status = JobStatus(self.status)
        if self.roles is None:  # jobs stored before roles: a flow's job was for reviewers
            review = self.streaming and self.name.startswith("review-")
            self.roles = ["reviewer"] if review else ["annotator"]
        if not self.roles or not isinstance(self.roles, list) \
                or any(r not in WORKER_ROLES for r in self.roles):
            raise ConfigurationError(
                f"roles must name who takes the tasks: {' and/or '.join(WORKER_ROLES)} "
                f"(admins always may); got {self.roles!r}", setting="roles",
                valid_values=list(WORKER_ROLES))
        custom = self.task_type is TaskType.CUSTOM
        if (not self.labels and not custom) or len(set(self.labels)) != len(self.labels) \
                or not all(isinstance(x, str) and x for x in self.labels):
            raise ConfigurationError("a job needs distinct labels", setting="labels")
        if custom or self.template:
            from loopworks.errors import ValidationError
            from loopworks.labeling.templates import check_template

            try:
                check_template(self.template, name="template")
            except ValidationError as exc:
                raise ConfigurationError(str(exc), setting="template") from None
        if self.max_concurrent_items is not None and (
                isinstance(self.max_concurrent_items, bool)
                or not isinstance(self.max_concurrent_items, int)
                or not 1 <= self.max_concurrent_items <= 100_000):
            raise ConfigurationError("max_concurrent_items must be a whole number from 1 to "
                                     f"100,000; got {self.max_concurrent_items!r}",
                                     setting="max_concurrent_items")
        if not 1 <= self.workers_per_item <= 100:
            raise ConfigurationError("workers per item must be 1-100", setting="workers")
        _check_seconds(self.time_limit_seconds, 10, MAX_TIME_LIMIT_SECONDS, "time_limit")
        _check_seconds(self.availability_lifetime_seconds, 60, MAX_LIFETIME_SECONDS,
                       "availability_lifetime_seconds")
        if not isinstance(self.examples, list) or \
                not all(isinstance(e, dict) for e in self.examples):
            raise ConfigurationError("examples must be a list of objects (e.g. "
                                     '{"source": ..., "answer": ...})', setting="examples")
        self.deadline = _parse_time(self.deadline, "deadline")
        if self.adaptive is not None:
            self._check_adaptive()
        for url in self.webhooks:  # the URL's shape; its addresses are checked at delivery
            check_url(url)
        if self.webhooks and not self.webhook_secret:
            raise ConfigurationError("webhooks need a webhook_secret to sign events with",
                                     setting="webhook_secret")
        self.label_attribute = self.label_attribute or self.name
        if self.auto_label is not None:
            self._check_auto_label()

    def _check_auto_label(self) -> None:
        settings = dict(self.auto_label or {})
        if self.task_type is not TaskType.TEXT_CLASSIFICATION:
            raise ConfigurationError(
                f"automated labeling works on text-classification jobs only; this one is "
                f"{self.task_type.value}", setting="auto_label")
        if self.streaming:
            raise ConfigurationError("a streaming job cannot use automated labeling",
                                     setting="auto_label")
        unknown = set(settings) - set(AUTO_LABEL_DEFAULTS)
        if unknown:
            raise ConfigurationError(
                f"unknown auto_label setting(s) {', '.join(sorted(unknown))}; known: "
                f"{', '.join(AUTO_LABEL_DEFAULTS)}", setting="auto_label")
        merged = {**AUTO_LABEL_DEFAULTS, **{k: v for k, v in settings.items()
                                            if v is not None or k in ("batch_size", "budget")}}
        target = merged["target_accuracy"]
        if isinstance(target, bool) or not isinstance(target, int | float) \
                or not 0.5 <= target < 1:
            raise ConfigurationError("auto_label.target_accuracy must be in [0.5, 1), e.g. "
                                     "0.95", setting="auto_label.target_accuracy")
        for key in ("batch_size", "budget"):
            value = merged[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigurationError(f"auto_label.{key} must be a positive whole number",
                                         setting=f"auto_label.{key}")
        if not isinstance(merged["diversity"], bool):
            raise ConfigurationError("auto_label.diversity must be true or false",
                                     setting="auto_label.diversity")
        if isinstance(merged["seed"], bool) or not isinstance(merged["seed"], int):
            raise ConfigurationError("auto_label.seed must be a whole number",
                                     setting="auto_label.seed")
        people = merged["annotator_accuracy"]
        if people is not None and (isinstance(people, bool) or not isinstance(people, int | float)
                                   or not 0.5 < people <= 1):
            raise ConfigurationError(
                "auto_label.annotator_accuracy must be in (0.5, 1] (how often people are "
                "right), or left out to measure it on gold items",
                setting="auto_label.annotator_accuracy")
        from loopworks.models.classifier import AUTO_LABEL_FEATURES

        sure = merged["assurance"]
        if isinstance(sure, bool) or not isinstance(sure, int | float) or not 0.5 <= sure < 1:
            raise ConfigurationError(
                "auto_label.assurance must be in [0.5, 1): how sure the job must be that "
                "machine labels reach the target (0.95 default; 0.5 takes the validation "
                "accuracy as measured)", setting="auto_label.assurance")

        if merged["features"] not in AUTO_LABEL_FEATURES:
            raise ConfigurationError(
                f"auto_label.features must be one of {', '.join(AUTO_LABEL_FEATURES)}, got "
                f"{merged['features']!r}", setting="auto_label.features")
        merged["target_accuracy"] = float(target)
        self.auto_label = merged

    def _check_adaptive(self) -> None:
        adaptive = self.adaptive or {}
        target = adaptive.get("target_confidence")
        most = adaptive.get("max_workers")
        if not isinstance(target, int | float) or not 0 < target <= 1:
            raise ConfigurationError("adaptive.target_confidence must be in (0, 1]",
                                     setting="adaptive.target_confidence")
        if not isinstance(most, int) or not self.workers_per_item <= most <= 100:
            raise ConfigurationError(
                f"adaptive.max_workers must be a whole number from workers per item "
                f"({self.workers_per_item}) to 100", setting="adaptive.max_workers")
        self.adaptive = {"target_confidence": float(target), "max_workers": most}

    @property
    def deadline_at(self) -> datetime | None:
        """When open items fail: the earlier of created + lifetime and the deadline."""
        if not self.created_at:
            return None
        end = as_utc(datetime.fromisoformat(self.created_at)) + timedelta(
            seconds=self.availability_lifetime_seconds)
        if self.deadline:
            end = min(end, as_utc(datetime.fromisoformat(self.deadline)))
        return end


@dataclass(frozen=True)
class Task:
    """One item leased to one worker until ``expires_at``.

    ``source`` is the text, or for image task types the image file's absolute path.
    """

    job: str
    item_id: int
    source: str
    data: dict[str, Any]
    labels: list[str]
    task_type: str
    instructions: str
    expires_at: datetime
    examples: list[dict[str, Any]] = field(default_factory=list)


#: What is stored of a spec (the rest is computed when a job is read).
SPEC_FIELDS = ("name", "team", "labels", "task_type", "instructions", "workers_per_item",
                "time_limit_seconds", "label_attribute", "created_at", "examples",
                "availability_lifetime_seconds", "deadline", "adaptive", "webhooks",
                "webhook_secret", "streaming", "auto_label", "roles", "template",
                "max_concurrent_items")


def may_work_on(worker: Any, spec: JobSpec) -> bool:
    """Whether the worker's role takes this job's tasks (admins take every job's).
    Team membership is checked separately."""
    role = worker.role.value
    return role == "admin" or role in (spec.roles or ())


def _check_seconds(value: object, low: int, high: int, setting: str) -> None:
    """A duration in whole seconds within [low, high], else a ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{setting.replace('_', ' ')} must be a whole number of "
                                 f"seconds from {low:,} to {high:,}; got {value!r}",
                                 setting=setting)



def dump_spec(spec: JobSpec) -> str:
    """The spec as stored: JSON of :data:`SPEC_FIELDS`."""
    data = {k: getattr(spec, k) for k in SPEC_FIELDS}
    data["task_type"] = spec.task_type.value
    return json.dumps(data)
