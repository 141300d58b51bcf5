"""The feature-group registry: definitions, tags and settings in the metadata database."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from loopworks.errors import ConfigurationError, ConflictError, NotFoundError
from loopworks.featurestore.definitions import FeatureDefinition
from loopworks.metadata.tables import feature_groups

__all__ = ["FeatureGroupSpec", "Registry", "validate_name"]

#: SageMaker's feature group names in lower case: letters, digits, '-' and '_', starting and
#: ending with a letter or digit (``reviews-feature-group-1629336103``), at most 63.
_NAME = re.compile(r"^(?=.{1,63}$)[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")


def validate_name(name: str) -> str:
    """Feature group names as SageMaker allows them, in lower case (SQL matches names
    without regard to case, so ``Reviews`` and ``reviews`` could not both be tables)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"invalid feature group name {name!r}: use 1-63 lower-case letters, digits, "
            "'-' and '_', starting and ending with a letter or digit (in SQL a name with "
            "'-' is written in double quotes)", feature_group=name)
    return name


@dataclass
class FeatureGroupSpec:
    """What the registry keeps about one feature group."""

    name: str
    record_id: str
    event_time: str
    definitions: list[FeatureDefinition]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    transformation: dict[str, Any] = field(default_factory=dict)
    ttl_seconds: float | None = None
    created_at: str = ""
    updated_at: str = ""

    def definition(self, name: str) -> FeatureDefinition:
        """The definition of one feature; NotFoundError names the known ones."""
        for d in self.definitions:
            if d.name == name:
                return d
        raise NotFoundError(
            f"feature group {self.name!r} has no feature {name!r}; features: "
            f"{', '.join(d.name for d in self.definitions)}",
            feature_group=self.name, feature=name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name, "description": self.description, "record_id": self.record_id,
            "event_time": self.event_time, "tags": dict(self.tags),
            "features": [d.to_dict() | {"type_name": d.type_name} for d in self.definitions],
            "transformation": dict(self.transformation), "ttl_seconds": self.ttl_seconds,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


def _row_to_spec(row: Any) -> FeatureGroupSpec:
    return FeatureGroupSpec(
        name=row.name, record_id=row.record_id, event_time=row.event_time,
        definitions=[FeatureDefinition.from_dict(d) for d in json.loads(row.definitions)],
        description=row.description or "", tags=json.loads(row.tags or "{}"),
        transformation=json.loads(row.transformation or "{}"), ttl_seconds=row.ttl_seconds,
        created_at=row.created_at, updated_at=row.updated_at)


class Registry:
    """CRUD of feature-group specs in the metadata database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, spec: FeatureGroupSpec) -> FeatureGroupSpec:
        """Insert a new spec; ConflictError if the name is taken."""
        now = datetime.now(UTC).isoformat()
        spec.created_at = spec.updated_at = now
        try:
            with self.engine.begin() as conn:
                conn.execute(feature_groups.insert().values(**self._values(spec)))
        except sa.exc.IntegrityError:
            raise ConflictError(f"feature group {spec.name!r} already exists",
                                feature_group=spec.name) from None
        return spec

    def get(self, name: str) -> FeatureGroupSpec:
        """One spec by name; NotFoundError if absent."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(feature_groups).where(
                feature_groups.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no feature group {name!r} (see `loopworks fs list`)",
                                feature_group=name)
        return _row_to_spec(row)

    def list(self) -> list[FeatureGroupSpec]:
        """All specs, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(feature_groups).order_by(feature_groups.c.name))
            return [_row_to_spec(r) for r in rows]

    def update(self, spec: FeatureGroupSpec) -> FeatureGroupSpec:
        """Replace a spec's mutable fields."""
        spec.updated_at = datetime.now(UTC).isoformat()
        values = self._values(spec)
        values.pop("created_at")
        with self.engine.begin() as conn:
            result = conn.execute(feature_groups.update().where(
                feature_groups.c.name == spec.name).values(**values))
        if result.rowcount == 0:
            raise NotFoundError(f"no feature group {spec.name!r}", feature_group=spec.name)
        return spec

    def delete(self, name: str) -> None:
        """Remove a spec (the caller removes the data)."""
        with self.engine.begin() as conn:
            conn.execute(feature_groups.delete().where(feature_groups.c.name == name))

    @staticmethod
    def _values(spec: FeatureGroupSpec) -> dict[str, Any]:
        return {
            "name": spec.name, "description": spec.description, "record_id": spec.record_id,
            "event_time": spec.event_time,
            "definitions": json.dumps([d.to_dict() for d in spec.definitions]),
            "tags": json.dumps(spec.tags), "transformation": json.dumps(spec.transformation),
            "ttl_seconds": spec.ttl_seconds, "created_at": spec.created_at,
            "updated_at": spec.updated_at,
        }
