"""What a script processing job is (:mod:`loopworks.processing.scripts` runs it): its inputs,
outputs and spec, checked as SageMaker's CreateProcessingJob checks them, and its record."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loopworks.errors import ConfigurationError

__all__ = ["JOB_NAME", "OPT_ML", "PROCESSING_ROOT", "ScriptInput", "ScriptJob", "ScriptJobSpec",
           "ScriptOutput", "interpreter"]

JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
OPT_ML = "/opt/ml"
PROCESSING_ROOT = "/opt/ml/processing"
_DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")
_DATA_TYPES = ("S3Prefix", "ManifestFile")
_ENGINES = ("local", "ray")


@dataclass(frozen=True)
class ScriptInput:
    """One input: ``source`` (``s3://bucket/prefix`` in loopworks' object store, or a local
    file or folder) downloaded to ``local_path`` under /opt/ml/processing."""

    name: str
    source: str
    local_path: str
    data_type: str = "S3Prefix"
    distribution: str = "FullyReplicated"


@dataclass(frozen=True)
class ScriptOutput:
    """One output: what the instances leave under ``local_path``, uploaded at the end to
    ``destination`` (``s3://bucket/prefix`` or a local folder)."""

    name: str
    local_path: str
    destination: str


@dataclass
class ScriptJobSpec:
    """What to run and on what (see the module). ``python`` is an interpreter or a virtual
    environment's folder (default: this process's interpreter). ``request`` keeps the
    SageMaker request as given (written to processingjobconfig.json, echoed by Describe)."""

    name: str
    entrypoint: list[str]
    arguments: list[str] = field(default_factory=list)
    inputs: list[ScriptInput] = field(default_factory=list)
    outputs: list[ScriptOutput] = field(default_factory=list)
    instance_count: int = 1
    environment: dict[str, str] = field(default_factory=dict)
    max_runtime_seconds: int = 86_400
    image_uri: str = ""
    python: str = ""
    engine: str = "local"
    isolation: str = "namespace"
    owner: str = ""
    request: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse a spec that cannot run, naming the field (ConfigurationError)."""
        if not JOB_NAME.fullmatch(self.name or ""):
            raise ConfigurationError(f"ProcessingJobName {self.name!r} must be 1-63 letters, "
                                     "digits and inner hyphens", setting="ProcessingJobName")
        if not self.entrypoint or not all(isinstance(a, str) and a for a in self.entrypoint):
            raise ConfigurationError("AppSpecification.ContainerEntrypoint must name the "
                                     "program to run", setting="AppSpecification")
        if not 1 <= self.instance_count <= 100:
            raise ConfigurationError("InstanceCount must be 1-100",
                                     setting="ProcessingResources.ClusterConfig.InstanceCount")
        if not 1 <= self.max_runtime_seconds <= 5 * 86_400:
            raise ConfigurationError("MaxRuntimeInSeconds must be 1-432000",
                                     setting="StoppingCondition.MaxRuntimeInSeconds")
        if self.engine not in _ENGINES:
            raise ConfigurationError(f"engine must be {' or '.join(_ENGINES)}", setting="engine")
        if self.isolation not in ("namespace", "none"):
            raise ConfigurationError("isolation must be namespace or none", setting="isolation")
        seen: set[str] = set()
        named: list[ScriptInput | ScriptOutput] = [*self.inputs, *self.outputs]
        for i, item in enumerate(named):
            kind = "ProcessingInputs" if i < len(self.inputs) else \
                "ProcessingOutputConfig.Outputs"
            at = i if i < len(self.inputs) else i - len(self.inputs)
            where = f"{kind}[{at}]"
            if item.name in seen:
                raise ConfigurationError(f"{where}: the name {item.name!r} is used twice",
                                         setting=where)
            seen.add(item.name)
            _check_local(item.local_path, f"{where}.LocalPath")
        for i, item in enumerate(self.inputs):
            where = f"ProcessingInputs[{i}].S3Input"
            if item.distribution not in _DISTRIBUTIONS:
                raise ConfigurationError(
                    f"{where}.S3DataDistributionType {item.distribution!r} must be one of "
                    f"{', '.join(_DISTRIBUTIONS)}", setting=f"{where}.S3DataDistributionType")
            if item.data_type not in _DATA_TYPES:
                raise ConfigurationError(
                    f"{where}.S3DataType {item.data_type!r} must be one of "
                    f"{', '.join(_DATA_TYPES)}", setting=f"{where}.S3DataType")
        if self.python:
            interpreter(self.python)


def _check_local(path: str, where: str) -> None:
    normal = os.path.normpath(path or "")
    if not path.startswith(PROCESSING_ROOT + "/") or not normal.startswith(
            PROCESSING_ROOT + "/") or normal != path.rstrip("/"):
        raise ConfigurationError(f"{where} {path!r} must be a folder under "
                                 f"{PROCESSING_ROOT}/", setting=where)


def interpreter(python: str) -> str:
    """The interpreter ``python`` names: itself, or a virtual environment's bin/python."""
    path = Path(python)
    if path.is_dir():
        path = path / "bin" / "python"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigurationError(f"python {python!r} is neither an interpreter nor a virtual "
                                 "environment's folder", setting="python")
    return str(path)


@dataclass
class ScriptJob:
    """A job's record: its spec, status (SageMaker's: InProgress, Completed, Failed,
    Stopping, Stopped), times, each instance's exit code and the failure reason; which
    host and process runs it and when that process was last seen alive (its heartbeat)."""

    spec: ScriptJobSpec
    status: str = "InProgress"
    created_at: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    failure_reason: str | None = None
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: Where each instance ran, on the Ray engine: host → Ray node id.
    nodes: dict[str, str] = field(default_factory=dict)
    #: The process running the job: ``<host> pid <pid>``.
    runner: str = ""
    #: When that process last refreshed its heartbeat (ISO 8601, UTC).
    last_seen: str | None = None

    @property
    def hosts(self) -> list[str]:
        """The instances' host names, algo-1 first."""
        return [f"algo-{i + 1}" for i in range(self.spec.instance_count)]

    def to_dict(self) -> dict[str, Any]:
        """The record as stored."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScriptJob:
        """A record read back."""
        spec = dict(data["spec"])
        spec["inputs"] = [ScriptInput(**i) for i in spec.get("inputs", [])]
        spec["outputs"] = [ScriptOutput(**o) for o in spec.get("outputs", [])]
        return cls(**{**data, "spec": ScriptJobSpec(**spec)})
