"""The schema as loopworks 0.1.0 left it (release d637d00), the baseline of the history.

A database made before migrations existed has no version: upgrading it runs this revision
too, which creates only the tables it lacks and brings older tables up to 0.1.0 (the column
and index changes earlier releases made by hand), so every database starts the history from
the same place.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _missing(bind: sa.Connection, table: str) -> bool:
    return not sa.inspect(bind).has_table(table)


def upgrade() -> None:
    bind = op.get_bind()
    if _missing(bind, "console_queries"):
        op.create_table(
            "console_queries",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("worker_id", sa.Integer(), nullable=False),
            sa.Column("sql", sa.Text(), nullable=False),
            sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ok", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            "ix_console_queries_worker_id", "console_queries", ["worker_id"], unique=False
        )
    if _missing(bind, "feature_groups"):
        op.create_table(
            "feature_groups",
            sa.Column("name", sa.String(length=63), nullable=False),
            sa.Column("description", sa.Text(), nullable=False),
            sa.Column("record_id", sa.String(length=255), nullable=False),
            sa.Column("event_time", sa.String(length=255), nullable=False),
            sa.Column("definitions", sa.Text(), nullable=False),
            sa.Column("tags", sa.Text(), nullable=False),
            sa.Column("transformation", sa.Text(), nullable=False),
            sa.Column("ttl_seconds", sa.Float(), nullable=True),
            sa.Column("created_at", sa.String(length=40), nullable=False),
            sa.Column("updated_at", sa.String(length=40), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if _missing(bind, "label_jobs"):
        op.create_table(
            "label_jobs",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("name", sa.String(length=63), nullable=False),
            sa.Column("team", sa.String(length=63), nullable=False),
            sa.Column("spec", sa.Text(), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("failure_reason", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("name"),
        )
    if _missing(bind, "label_webhook_outbox"):
        op.create_table(
            "label_webhook_outbox",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("url", sa.Text(), nullable=False),
            sa.Column("event", sa.String(length=32), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("gave_up_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            "ix_label_outbox_due",
            "label_webhook_outbox",
            ["delivered_at", "gave_up_at", "next_attempt_at"],
            unique=False,
        )
    if _missing(bind, "review_flows"):
        op.create_table(
            "review_flows",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("name", sa.String(length=63), nullable=False),
            sa.Column("spec", sa.Text(), nullable=False),
            sa.Column("evaluated", sa.Integer(), nullable=False),
            sa.Column("activated", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("name"),
        )
    if _missing(bind, "teams"):
        op.create_table(
            "teams",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("name", sa.String(length=63), nullable=False),
            sa.Column("description", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("name"),
        )
    if _missing(bind, "workers"):
        op.create_table(
            "workers",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("name", sa.String(length=63), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.Column("password_hash", sa.String(length=255), nullable=True),
            sa.Column("active", sa.Boolean(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("name"),
        )
    if _missing(bind, "credentials"):
        op.create_table(
            "credentials",
            sa.Column("digest", sa.String(length=64), nullable=False),
            sa.Column("worker_id", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
            sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("digest"),
        )
    if _missing(bind, "label_auto_rounds"):
        op.create_table(
            "label_auto_rounds",
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("round", sa.Integer(), nullable=False),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("token", sa.String(length=64), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("human_labels", sa.Integer(), nullable=True),
            sa.Column("training_items", sa.Integer(), nullable=True),
            sa.Column("machine_labels", sa.Integer(), nullable=True),
            sa.Column("sent_to_people", sa.Integer(), nullable=True),
            sa.Column("failed", sa.Integer(), nullable=True),
            sa.Column("held_left", sa.Integer(), nullable=True),
            sa.Column("threshold", sa.Float(), nullable=True),
            sa.Column("validation_accuracy", sa.Float(), nullable=True),
            sa.Column("validation_items", sa.Integer(), nullable=True),
            sa.Column("validation_pool", sa.Integer(), nullable=True),
            sa.Column("lower_bound", sa.Float(), nullable=True),
            sa.Column("annotator_accuracy", sa.Float(), nullable=True),
            sa.Column("gold_answers", sa.Integer(), nullable=True),
            sa.Column("model_version", sa.String(length=160), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
            sa.ForeignKeyConstraint(["job_id"], ["label_jobs.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("job_id", "round"),
        )
    if _missing(bind, "label_items"):
        op.create_table(
            "label_items",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("source", sa.Text(), nullable=False),
            sa.Column("data", sa.Text(), nullable=False),
            sa.Column("answers", sa.Integer(), nullable=False),
            sa.Column("leases", sa.Integer(), nullable=False),
            sa.Column("state", sa.Integer(), nullable=False),
            sa.Column("wanted", sa.Integer(), nullable=False),
            sa.Column("failure_reason", sa.Text(), nullable=True),
            sa.ForeignKeyConstraint(["job_id"], ["label_jobs.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(
            "ix_label_items_open",
            "label_items",
            ["job_id", "state", sa.literal_column("answers DESC"), "seq", "leases", "wanted"],
            unique=False,
        )
    if _missing(bind, "review_loops"):
        op.create_table(
            "review_loops",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("flow_id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(length=63), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("content_hash", sa.String(length=64), nullable=False),
            sa.Column("input_content", sa.Text(), nullable=False),
            sa.Column("conditions_fired", sa.Text(), nullable=False),
            sa.Column("item_id", sa.Integer(), nullable=True),
            sa.Column("failure_code", sa.String(length=32), nullable=True),
            sa.Column("failure_reason", sa.Text(), nullable=True),
            sa.Column("output_uri", sa.Text(), nullable=True),
            sa.Column("result", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
            sa.ForeignKeyConstraint(["flow_id"], ["review_flows.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("flow_id", "name", name="uq_review_loop_name"),
        )
        op.create_index("ix_review_loops_item", "review_loops", ["item_id"], unique=False)
        op.create_index(
            "ix_review_loops_status", "review_loops", ["flow_id", "status", "id"], unique=False
        )
    if _missing(bind, "review_passes"):
        op.create_table(
            "review_passes",
            sa.Column("flow_id", sa.Integer(), nullable=False),
            sa.Column("name", sa.String(length=63), nullable=False),
            sa.Column("content_hash", sa.String(length=64), nullable=False),
            sa.ForeignKeyConstraint(["flow_id"], ["review_flows.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("flow_id", "name"),
        )
    if _missing(bind, "team_members"):
        op.create_table(
            "team_members",
            sa.Column("team_id", sa.Integer(), nullable=False),
            sa.Column("worker_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["worker_id"], ["workers.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("team_id", "worker_id"),
        )
    if _missing(bind, "label_answers"):
        op.create_table(
            "label_answers",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("item_id", sa.Integer(), nullable=False),
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("worker_id", sa.Integer(), nullable=False),
            sa.Column("answer", sa.Text(), nullable=False),
            sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["item_id"], ["label_items.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("item_id", "worker_id", name="uq_answer_item_worker"),
        )
        op.create_index("ix_label_answers_job_id", "label_answers", ["job_id"], unique=False)
        op.create_index(
            "ix_label_answers_worker", "label_answers", ["job_id", "worker_id"], unique=False
        )
    if _missing(bind, "label_auto_items"):
        op.create_table(
            "label_auto_items",
            sa.Column("item_id", sa.Integer(), nullable=False),
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.Column("round", sa.Integer(), nullable=False),
            sa.Column("covered_round", sa.Integer(), nullable=True),
            sa.Column("covered_correct", sa.Boolean(), nullable=True),
            sa.ForeignKeyConstraint(["item_id"], ["label_items.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("item_id"),
        )
        op.create_index("ix_label_auto_items_job_id", "label_auto_items", ["job_id"], unique=False)
    if _missing(bind, "label_leases"):
        op.create_table(
            "label_leases",
            sa.Column("item_id", sa.Integer(), nullable=False),
            sa.Column("worker_id", sa.Integer(), nullable=False),
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["item_id"], ["label_items.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("item_id", "worker_id"),
        )
        op.create_index("ix_label_leases_job_id", "label_leases", ["job_id"], unique=False)
        op.create_index(
            "ix_label_leases_worker", "label_leases", ["job_id", "worker_id"], unique=False
        )
    if _missing(bind, "label_machine"):
        op.create_table(
            "label_machine",
            sa.Column("item_id", sa.Integer(), nullable=False),
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.Column("label", sa.Text(), nullable=False),
            sa.Column("confidence", sa.Float(), nullable=False),
            sa.Column("model_version", sa.String(length=160), nullable=False),
            sa.Column("round", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["item_id"], ["label_items.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("item_id"),
        )
        op.create_index("ix_label_machine_job_id", "label_machine", ["job_id"], unique=False)
    if _missing(bind, "label_skips"):
        op.create_table(
            "label_skips",
            sa.Column("item_id", sa.Integer(), nullable=False),
            sa.Column("worker_id", sa.Integer(), nullable=False),
            sa.Column("job_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["item_id"], ["label_items.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("item_id", "worker_id"),
        )
        op.create_index(
            "ix_label_skips_worker", "label_skips", ["job_id", "worker_id"], unique=False
        )
    _older_releases(bind)


def _older_releases(bind: sa.Connection) -> None:
    """Columns and indexes that releases before 0.1.0 lacked (no-ops on 0.1.0 itself)."""
    inspector = sa.inspect(bind)

    def columns(table: str) -> set[str]:
        return {c["name"] for c in inspector.get_columns(table)}

    if "covered_correct" not in columns("label_auto_items"):
        op.add_column("label_auto_items", sa.Column("covered_correct", sa.Boolean()))
    if "gold_answers" not in columns("label_auto_rounds"):
        op.add_column("label_auto_rounds", sa.Column("annotator_accuracy", sa.Float()))
        op.add_column("label_auto_rounds", sa.Column("gold_answers", sa.Integer()))
    if "failure_reason" not in columns("label_jobs"):
        op.add_column("label_jobs", sa.Column("failure_reason", sa.Text()))
    item_columns = columns("label_items")
    if "failure_reason" not in item_columns:
        op.add_column("label_items", sa.Column("failure_reason", sa.Text()))
    if "state" not in item_columns:
        op.add_column(
            "label_items", sa.Column("state", sa.Integer(), nullable=False, server_default="0")
        )
        op.add_column(
            "label_items", sa.Column("wanted", sa.Integer(), nullable=False, server_default="1")
        )
        jobs = sa.table("label_jobs", sa.column("id"), sa.column("spec"))
        items = sa.table(
            "label_items",
            sa.column("job_id"),
            sa.column("answers"),
            sa.column("state"),
            sa.column("wanted"),
        )
        for job_id, spec in bind.execute(sa.select(jobs.c.id, jobs.c.spec)).all():
            per_item = int(json.loads(spec).get("workers_per_item", 1))
            bind.execute(
                items.update()
                .where(items.c.job_id == job_id)
                .values(wanted=per_item, state=sa.case((items.c.answers >= per_item, 1), else_=0))
            )
    indexes = {i["name"] for i in inspector.get_indexes("label_items")}
    if "ix_label_items_next" in indexes:
        op.drop_index("ix_label_items_next", table_name="label_items")
    if "ix_label_items_open" not in indexes:
        op.create_index(
            "ix_label_items_open",
            "label_items",
            ["job_id", "state", sa.literal_column("answers DESC"), "seq", "leases", "wanted"],
            unique=False,
        )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the database instead")
