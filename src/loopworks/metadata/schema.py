"""The metadata database's schema version: bring a database to this release's, refuse one
made by a newer release.

The history lives in ``loopworks/metadata/migrations`` (Alembic, one history for every
table). :func:`ensure_schema` runs when a process first opens a database
(:func:`loopworks.metadata.open_engine`): a new database gets every table, an older one is
upgraded (a database made before migrations existed starts at the baseline, ``0001``), one
already current costs one query, and one at a revision this release does not know, written
by a newer loopworks, is refused with :class:`SchemaTooNew` rather than misread. The check
and the upgrade run in one transaction under a lock (SQLite's write lock, a PostgreSQL
advisory lock), so processes starting together upgrade once. ``loopworks db upgrade`` does
the same on demand and ``loopworks db status`` shows where a database stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loopworks.errors import ConfigurationError

__all__ = ["HEAD", "SchemaStatus", "SchemaTooNew", "ensure_schema", "history", "status",
           "upgrade"]

#: The newest revision this release knows (a test keeps it equal to the migrations' head).
HEAD = "0008"
_MIGRATIONS = Path(__file__).with_name("migrations")
_VERSION_TABLE = "alembic_version"
_PG_LOCK = 0x6C77_6462  # "lwdb": one advisory lock for schema changes


class SchemaTooNew(ConfigurationError):
    """The database was upgraded by a newer loopworks than this one."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: its revision (None: no version yet), this release's head,
    and whether it has loopworks tables at all."""

    current: str | None
    head: str
    has_tables: bool

    @property
    def up_to_date(self) -> bool:
        """True when the database is at this release's revision."""
        return self.current == self.head


def _current(conn: sa.Connection) -> tuple[str | None, bool]:
    inspector = sa.inspect(conn)
    if not inspector.has_table(_VERSION_TABLE):
        from loopworks.metadata.tables import metadata

        return None, any(inspector.has_table(t) for t in metadata.tables)
    row = conn.execute(sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")).first()
    return (row[0] if row else None), True


def _config(conn: sa.Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    scripts = ScriptDirectory(str(_MIGRATIONS))
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _refuse_newer(engine: sa.Engine, revision: str) -> None:
    if not _known(revision):
        raise SchemaTooNew(
            f"the metadata database {engine.url.render_as_string(hide_password=True)} is at "
            f"schema revision {revision!r}, which this loopworks (schema {HEAD}) does not know: "
            "a newer loopworks upgraded it. Upgrade loopworks (pip install -U loopworks), or "
            "point LOOPWORKS_DATABASE_URL at another database.", revision=revision, head=HEAD)


def status(engine: sa.Engine) -> SchemaStatus:
    """The database's revision next to this release's (reads only)."""
    with engine.connect() as conn:
        current, has_tables = _current(conn)
    return SchemaStatus(current, HEAD, has_tables)


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the database to this release's schema (creating it when empty).

    Returns:
        The revision before (None: new or never versioned) and after.

    Raises:
        SchemaTooNew: A newer loopworks upgraded the database.
    """
    from alembic import command

    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, the database's write lock
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        before, _ = _current(conn)
        if before == HEAD:
            return before, HEAD
        if before is not None:
            _refuse_newer(engine, before)
        command.upgrade(_config(conn), "head")
    return before, HEAD


def ensure_schema(engine: sa.Engine) -> None:
    """Check (and, when older, upgrade) a database its process is about to use. One query
    when it is current.

    Raises:
        SchemaTooNew: A newer loopworks upgraded the database.
    """
    with engine.connect() as conn:
        current, _ = _current(conn)
    if current != HEAD:
        upgrade(engine)


def history() -> list[tuple[str, str]]:
    """Every revision, oldest first, with the first line of its description."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(_MIGRATIONS))
    revisions = list(scripts.walk_revisions())[::-1]
    return [(r.revision, (r.doc or "").splitlines()[0] if r.doc else "") for r in revisions]
