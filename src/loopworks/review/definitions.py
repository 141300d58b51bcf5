"""Review flows as values: a flow definition (A2I's ``CreateFlowDefinition``), a human loop,
their statuses and failure codes, and the checks a flow passes before it is stored.

:mod:`loopworks.review.flows` is the service that keeps them (:class:`HumanReview`);
:mod:`loopworks.review.output` writes what a completed loop produces.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from loopworks.errors import ConfigurationError, InputError
from loopworks.labeling.spec import MAX_TIME_LIMIT_SECONDS
from loopworks.labeling.tasktypes import TaskType
from loopworks.review.conditions import ActivationConditions

__all__ = ["MAX_FLOW_LIFETIME_SECONDS", "NAME_PATTERN", "OUTPUT_PROTOCOLS", "FailureCode",
           "FlowDefinition", "HumanLoop", "LoopStatus", "StartResult", "TEMPLATES",
           "check_output", "loop_text", "prediction_of"]

#: The longest a loop may wait for people: one year.
MAX_FLOW_LIFETIME_SECONDS = 365 * 24 * 3600
#: Object stores an output document can be written to (fsspec protocols that write).
OUTPUT_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory")

#: Built-in task templates and the labeling task type each uses.
TEMPLATES = {"classification-review": TaskType.TEXT_CLASSIFICATION,
             "span-review": TaskType.NAMED_ENTITY_RECOGNITION}
#: What flow and human loop names look like (A2I: lower-case letters, digits, hyphens).
NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")


class LoopStatus(StrEnum):
    """A2I's human-loop statuses."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class FailureCode(StrEnum):
    """Why a loop failed."""

    VALIDATION_ERROR = "ValidationError"
    EXPIRED = "Expired"
    INTERNAL_ERROR = "InternalError"


@dataclass
class FlowDefinition:
    """A flow definition: who reviews what, how many times, for how long, where it goes.

    ``activation_conditions`` is A2I's document (see :mod:`loopworks.review.conditions`);
    None or an empty list sends every input to people. ``template`` is a built-in name
    (``classification-review``, ``span-review``) or the text of a Jinja2 template (rendered
    with autoescape by the server). ``output`` is a local folder or an fsspec URL.
    """

    name: str
    team: str
    labels: list[str]
    output: str
    title: str = ""
    description: str = ""
    template: str = "classification-review"
    task_count: int = 1
    time_limit_seconds: int = 300
    availability_lifetime_seconds: int = 7 * 24 * 3600
    activation_conditions: dict[str, Any] | None = None
    webhooks: list[str] = field(default_factory=list)
    webhook_secret: str = ""
    created_at: str = ""
    #: Also write each reviewed label into this feature group, keyed by the input field
    #: ``id_field`` (the loop's name when empty), with its provenance.
    feature_group: str = ""
    id_field: str = ""
    #: A human task UI (A2I's): a Liquid template with crowd-html elements over
    #: ``task.input``, the loop's input content as given. With one, the input needs no
    #: particular field, the answer is the form's JSON, and ``labels`` may be empty
    #: (activation conditions then need none, or ``probabilities`` over the labels).
    task_ui: str = ""
    #: Where ``output`` is: ``""`` a folder or an fsspec URL; ``"objects"`` an
    #: ``s3://BUCKET/PREFIX`` of loopworks' own object store (flows made over /aws).
    output_store: str = ""
    #: The flow's ARN as SageMaker writes it (``arn:aws:sagemaker:REGION:ACCOUNT:
    #: flow-definition/NAME``), for flows made over /aws: their output documents carry it.
    aws_arn: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ConfigurationError(
                f"invalid flow name {self.name!r}: 1-63 lower-case letters, digits and '-'",
                setting="name")
        if isinstance(self.task_count, bool) or not isinstance(self.task_count, int) \
                or not 1 <= self.task_count <= 100:
            raise ConfigurationError("task count (reviewers per loop) must be 1-100",
                                     setting="task_count")
        for setting, low, high in (("time_limit_seconds", 10, MAX_TIME_LIMIT_SECONDS),
                                   ("availability_lifetime_seconds", 60,
                                    MAX_FLOW_LIFETIME_SECONDS)):
            value = getattr(self, setting)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not low <= value <= high:
                raise ConfigurationError(
                    f"{setting.replace('_', ' ')} must be a whole number of seconds from "
                    f"{low:,} to {high:,}; got {value!r}", setting=setting)
        if not isinstance(self.output, str) or not self.output.strip():
            raise ConfigurationError("a flow needs an output location", setting="output")
        if self.output_store not in ("", "objects"):
            raise ConfigurationError(f"output_store {self.output_store!r}: use '' or "
                                     "'objects'", setting="output_store")
        if self.task_ui:
            from loopworks.errors import ValidationError
            from loopworks.labeling.templates import check_template

            try:
                check_template(self.task_ui, name="task_ui")
            except ValidationError as exc:
                raise ConfigurationError(str(exc), setting="task_ui") from None
        # Validated now, with the path of any mistake, not when the first input arrives.
        ActivationConditions(self.activation_conditions, self.labels)

    @property
    def job_name(self) -> str:
        """The streaming labeling job that carries this flow's tasks."""
        return f"review-{self.name}"

    @property
    def task_type(self) -> TaskType:
        if self.task_ui:
            return TaskType.CUSTOM
        return TEMPLATES.get(self.template, TaskType.TEXT_CLASSIFICATION)

    @property
    def arn(self) -> str:
        """The flow's ARN in output documents: SageMaker's for a flow made over /aws, else
        an ARN-like identifier."""
        return self.aws_arn or f"loopworks:flow-definition/{self.name}"

    def loop_arn(self, loop: str) -> str:
        """A loop's ARN, in the same form as :attr:`arn`."""
        if self.aws_arn:
            return self.aws_arn.replace(f":flow-definition/{self.name}", f":human-loop/{loop}")
        return f"loopworks:human-loop/{self.name}/{loop}"


@dataclass
class HumanLoop:
    """One human loop and where it stands."""

    name: str
    flow: str
    status: LoopStatus
    created_at: datetime
    input_content: dict[str, Any]
    conditions_fired: list[str]
    failure_code: str | None = None
    failure_reason: str | None = None
    output_uri: str | None = None
    completed_at: datetime | None = None
    result: dict[str, Any] | None = None
    item_id: int | None = None

    def describe(self) -> dict[str, Any]:
        """A2I's DescribeHumanLoop shape."""
        out: dict[str, Any] = {
            "HumanLoopName": self.name, "HumanLoopStatus": self.status.value,
            "FlowDefinitionArn": f"loopworks:flow-definition/{self.flow}",
            "HumanLoopArn": f"loopworks:human-loop/{self.flow}/{self.name}",
            "CreationTime": self.created_at.isoformat(),
            "ActivationConditionsFired": self.conditions_fired}
        if self.failure_code:
            out["FailureCode"] = self.failure_code
            out["FailureReason"] = self.failure_reason
        if self.output_uri:
            out["HumanLoopOutput"] = {"OutputUri": self.output_uri}
        if self.result is not None:
            out["ConsolidatedAnswer"] = self.result
        return out


@dataclass
class StartResult:
    """What start_human_loop did: started (or found, when repeated) a loop, or not."""

    started: bool
    loop: HumanLoop | None
    conditions_fired: list[str]
    reason: str = ""




def check_output(output: object) -> str:
    """A flow's output location, checked when the flow is created: a local folder this
    process can write (made if missing), or an object-store URL (``s3://``, ``gs://``,
    ``az://``...). ``http://`` and other read-only or unknown schemes are refused.

    Raises:
        ConfigurationError: Names the location and what is wrong with it.
    """
    if not isinstance(output, str) or not output.strip():
        raise ConfigurationError("a flow needs an output location", setting="output")
    if "\x00" in output:
        raise ConfigurationError(f"output {output!r} holds a NUL character", setting="output")
    if "://" in output and not output.startswith("file://"):
        scheme = output.split("://", 1)[0].lower()
        if scheme not in OUTPUT_PROTOCOLS or not output.split("://", 1)[1].strip("/"):
            raise ConfigurationError(
                f"output {output!r} cannot hold output documents: use a local folder or "
                f"an object-store URL ({', '.join(p + '://' for p in OUTPUT_PROTOCOLS)})",
                setting="output")
        return output
    folder = Path(output.removeprefix("file://"))
    try:
        folder = folder.expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".loopworks-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (OSError, RuntimeError) as exc:  # RuntimeError: ~name of no user
        raise ConfigurationError(f"output folder {str(folder)!r} is not writable: "
                                 f"{getattr(exc, 'strerror', None) or exc}",
                                 setting="output") from None
    return output


def loop_text(content: dict[str, Any], *, required: bool = True) -> str:
    """The text people review: ``source``, ``text`` or ``taskObject`` of the input (without
    ``required``, for a task UI that shows the input its own way: else the input's JSON)."""
    for key in ("source", "text", "taskObject"):
        value = content.get(key)
        if isinstance(value, str) and value.strip():
            return value
    if not required:
        return json.dumps(content, ensure_ascii=False, sort_keys=True)[:10_000]
    raise InputError("the input content needs the text to review under 'source', 'text' or "
                     "'taskObject'", field="input_content")


def prediction_of(content: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """The model's prediction carried by the input: ``probabilities`` {class: p} (or a list
    in class order); label and confidence are derived from them."""
    probs = content.get("probabilities")
    if isinstance(probs, dict):
        missing = [c for c in labels if c not in probs]
        if missing or set(probs) - set(labels):
            raise InputError(f"probabilities must name exactly the flow's classes {list(labels)}"
                             f" (got {sorted(probs)})", field="probabilities")
        vector = [probs[c] for c in labels]
    elif isinstance(probs, list) and len(probs) == len(labels):
        vector = probs
    else:
        raise InputError(f"the input content needs the model's 'probabilities' for the "
                         f"classes {list(labels)}", field="probabilities")
    try:
        values = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("probabilities must be numbers", field="probabilities") from None
    if not np.isfinite(values).all() or (values < 0).any() or abs(values.sum() - 1) > 1e-3:
        raise InputError("probabilities must be non-negative and sum to 1",
                         field="probabilities")
    best = int(values.argmax())
    return {"label": labels[best], "confidence": float(values[best]),
            "probabilities": dict(zip(labels, values.tolist(), strict=True))}
