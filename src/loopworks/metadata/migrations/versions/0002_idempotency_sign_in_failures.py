"""Idempotent answers, throttled sign-ins, longer job names (issue 12's hardening).

``label_idempotency`` keeps each answer's result under its ``Idempotency-Key``;
``sign_in_failures`` counts failed password sign-ins per name and per address;
``label_jobs.name`` grows to 80 characters for review flows' jobs (``review-`` + a 63-letter
flow name; SQLite never enforced the length).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_idempotency",
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", "key"),
    )
    op.create_index("ix_label_idempotency_created_at", "label_idempotency", ["created_at"],
                    unique=False)
    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("label_jobs", "name", type_=sa.String(length=80),
                        existing_type=sa.String(length=63), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("label_jobs", "name", type_=sa.String(length=63),
                        existing_type=sa.String(length=80), existing_nullable=False)
    op.drop_table("sign_in_failures")
    op.drop_index("ix_label_idempotency_created_at", table_name="label_idempotency")
    op.drop_table("label_idempotency")
