"""Records of SageMaker resources that have no other home in loopworks: a work team's
member definitions and description, a human task UI's template. One JSON document per kind
and name, with creation and update times; the wire layer gives them their AWS shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConflictError, NotFoundError
from loopworks.metadata.tables import sagemaker_resources

__all__ = ["Resource", "Resources"]


@dataclass(frozen=True)
class Resource:
    """One resource: its kind, name, document and times."""

    kind: str
    name: str
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class Resources:
    """Create, read, list, update and delete resource documents of one database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(self, kind: str, name: str, document: dict[str, Any]) -> Resource:
        """A new resource (ConflictError when the kind already has one of that name)."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(sagemaker_resources.insert().values(
                    kind=kind, name=name, document=json.dumps(document), created_at=now,
                    updated_at=now))
        except sa.exc.IntegrityError:
            raise ConflictError(f"a {kind} named {name!r} exists already", kind=kind,
                                name=name) from None
        return Resource(kind, name, document, now, now)

    def get(self, kind: str, name: str) -> Resource:
        """One resource (NotFoundError when there is none)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sagemaker_resources).where(
                sagemaker_resources.c.kind == kind,
                sagemaker_resources.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no {kind} named {name!r}", kind=kind, name=name)
        return _resource(row)

    def list(self, kind: str) -> list[Resource]:
        """Every resource of a kind, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(sagemaker_resources).where(
                sagemaker_resources.c.kind == kind)
                .order_by(sagemaker_resources.c.name)).all()
        return [_resource(r) for r in rows]

    def update(self, kind: str, name: str, document: dict[str, Any]) -> Resource:
        """Replace a resource's document (NotFoundError when there is none)."""
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(sagemaker_resources.update().where(
                sagemaker_resources.c.kind == kind, sagemaker_resources.c.name == name)
                .values(document=json.dumps(document), updated_at=now)).rowcount
        if not changed:
            raise NotFoundError(f"no {kind} named {name!r}", kind=kind, name=name)
        return self.get(kind, name)

    def delete(self, kind: str, name: str) -> None:
        """Delete a resource (NotFoundError when there is none)."""
        with self.engine.begin() as conn:
            gone = conn.execute(sagemaker_resources.delete().where(
                sagemaker_resources.c.kind == kind,
                sagemaker_resources.c.name == name)).rowcount
        if not gone:
            raise NotFoundError(f"no {kind} named {name!r}", kind=kind, name=name)


def _resource(row: Any) -> Resource:
    return Resource(row.kind, row.name, json.loads(row.document), row.created_at,
                    row.updated_at)
