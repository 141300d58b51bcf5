"""The object store behind the S3 endpoint: buckets, objects, multipart uploads and parts
(issue 14). Object bodies live as files beside; these rows say which key is which file.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "s3_buckets",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "s3_objects",
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", _KEY, nullable=False),
        sa.Column("blob", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("user_metadata", sa.Text(), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bucket"], ["s3_buckets.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("bucket", "key"),
    )
    op.create_table(
        "s3_uploads",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("key", _KEY, nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("user_metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bucket"], ["s3_buckets.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id"),
    )
    op.create_table(
        "s3_parts",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("blob", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["s3_uploads.upload_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", "part_number"),
    )


def downgrade() -> None:
    op.drop_table("s3_parts")
    op.drop_table("s3_uploads")
    op.drop_table("s3_objects")
    op.drop_table("s3_buckets")
