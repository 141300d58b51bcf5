"""Mounts of the object store: a bucket prefix served from a folder loopworks writes, such as
a feature group's Delta table at its OfflineStoreConfig S3 URI (issue 14).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "s3_mounts",
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("prefix", _KEY, nullable=False),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bucket"], ["s3_buckets.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("bucket", "prefix"),
    )


def downgrade() -> None:
    op.drop_table("s3_mounts")
