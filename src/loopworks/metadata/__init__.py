"""Metadata storage: one SQLAlchemy database (SQLite file by default, PostgreSQL by URL).

Capabilities keep their own tables in it (feature groups now; jobs, workers, tasks and human
loops later), each behind a small repository class.
"""

from __future__ import annotations

from loopworks.metadata.database import (
    READ_ONLY,
    build_engine,
    database_url,
    dispose_engine,
    open_engine,
)

__all__ = ["READ_ONLY", "build_engine", "database_url", "dispose_engine", "open_engine"]
