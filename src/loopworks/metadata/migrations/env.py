"""Alembic's environment for loopworks: migrations run on the connection (and inside the
transaction) that :func:`loopworks.metadata.schema.upgrade` hands over, never on a URL of
their own, so the check of the current revision and the upgrade happen under one lock."""

from __future__ import annotations

from alembic import context

from loopworks.metadata.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  transaction_per_migration=False)
with context.begin_transaction():  # joins the caller's transaction
    context.run_migrations()
