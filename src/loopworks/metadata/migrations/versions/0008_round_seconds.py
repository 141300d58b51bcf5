"""Automated-labeling rounds record what they cost: wall seconds and the CPU seconds of the
process while it trained and ran the round's model.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("label_auto_rounds") as batch:
        batch.add_column(sa.Column("seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cpu_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label_auto_rounds") as batch:
        batch.drop_column("cpu_seconds")
        batch.drop_column("seconds")
