"""The labeling tables in the metadata database, and bringing older databases up to date.

Item states: ``OPEN`` (still wants answers), ``LABELED`` (has its answers), ``FAILED`` (nobody
finished it before the job's deadline; kept with its reason), ``HELD`` (automated labeling
keeps it back: the model may label it, or a later round hands it to people; never handed
out while held). ``wanted`` is how many answers
an item wants now: the job's workers per item, raised one at a time by adaptive redundancy.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

__all__ = ["MAX_ID", "ItemState", "answers", "auto_items", "auto_rounds", "idempotency", "items",
           "jobs", "leases", "machine_labels", "migrate", "outbox", "skips"]

#: The largest id an ``sa.Integer`` column holds on every backend (32-bit on PostgreSQL): an
#: id from outside past it names nothing, and PostgreSQL refuses to even compare with it.
MAX_ID = 2**31 - 1


class ItemState:
    """Values of ``label_items.state``."""

    OPEN = 0
    LABELED = 1
    FAILED = 2
    HELD = 3


meta = sa.MetaData()
jobs = sa.Table(
    "label_jobs", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # 63 characters, or 70 for a review flow's job (``review-`` + the flow's name).
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column("team", sa.String(63), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("failure_reason", sa.Text, nullable=True),
)
items = sa.Table(
    "label_items", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.ForeignKey("label_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("answers", sa.Integer, nullable=False, default=0),
    sa.Column("leases", sa.Integer, nullable=False, default=0),
    sa.Column("state", sa.Integer, nullable=False, default=ItemState.OPEN),
    sa.Column("wanted", sa.Integer, nullable=False, default=1),
    sa.Column("failure_reason", sa.Text, nullable=True),
)
#: Matches next_task's filter and order: open items of a job, most-answered first, then
#: input order; ``leases`` and ``wanted`` ride along so the quota test needs no row lookup.
#: Labeled and failed items fall out of the range, so the walk never passes finished work.
ix_items_open = sa.Index("ix_label_items_open", items.c.job_id, items.c.state,
                         items.c.answers.desc(), items.c.seq, items.c.leases, items.c.wanted)
leases = sa.Table(
    "label_leases", meta,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_label_leases_worker", "job_id", "worker_id"),
)
answers = sa.Table(
    "label_answers", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), nullable=False),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("worker_id", sa.Integer, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("item_id", "worker_id", name="uq_answer_item_worker"),
    sa.Index("ix_label_answers_worker", "job_id", "worker_id"),
)
skips = sa.Table(
    "label_skips", meta,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Index("ix_label_skips_worker", "job_id", "worker_id"),
)
#: Answers' idempotency keys (``Idempotency-Key``): a client that retries an answer whose
#: reply it never got is given the stored result instead of a 409. Kept for a day.
idempotency = sa.Table(
    "label_idempotency", meta,
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("item_id", sa.Integer, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)
#: Webhook deliveries, written in the transaction that caused the event (so none is lost)
#: and crossed off only after the receiver said 2xx (at least once).
outbox = sa.Table(
    "label_webhook_outbox", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("gave_up_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_label_outbox_due", "delivered_at", "gave_up_at", "next_attempt_at"),
)

#: Automated labeling: the items people were asked to label and why (``validation``: the
#: held-out random sample thresholds are chosen on; ``training``: the first random sample
#: and each round's batch). ``covered_round``: for validation items, the round whose model
#: and threshold would have machine-labeled it (``covered_correct``: and whether that model
#: was right; NULL: it stands for an item that round sent to people), so later thresholds
#: are chosen on the validation items that still look like the items left (autolabel.py).
auto_items = sa.Table(
    "label_auto_items", meta,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("covered_round", sa.Integer, nullable=True),
    sa.Column("covered_correct", sa.Boolean, nullable=True),
)
#: Labels a model gave, with what it was sure of and which model version gave them.
machine_labels = sa.Table(
    "label_machine", meta,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(160), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
#: One row per automated-labeling round. A round is claimed by inserting its row with
#: ``state = 'running'`` and a token (the primary key makes two claims of one round
#: impossible); it is filled in and set ``done`` in the transaction that writes its labels.
auto_rounds = sa.Table(
    "label_auto_rounds", meta,
    sa.Column("job_id", sa.ForeignKey("label_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("human_labels", sa.Integer, nullable=True),
    sa.Column("training_items", sa.Integer, nullable=True),
    sa.Column("machine_labels", sa.Integer, nullable=True),
    sa.Column("sent_to_people", sa.Integer, nullable=True),
    sa.Column("failed", sa.Integer, nullable=True),
    sa.Column("held_left", sa.Integer, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("validation_accuracy", sa.Float, nullable=True),
    sa.Column("validation_items", sa.Integer, nullable=True),
    sa.Column("validation_pool", sa.Integer, nullable=True),
    sa.Column("lower_bound", sa.Float, nullable=True),
    sa.Column("annotator_accuracy", sa.Float, nullable=True),
    sa.Column("gold_answers", sa.Integer, nullable=True),
    sa.Column("model_version", sa.String(160), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
)


def migrate(engine: sa.Engine) -> None:
    """Create missing tables; add the columns and index older labeling databases lack."""
    inspector = sa.inspect(engine)
    existing = set(inspector.get_table_names())
    meta.create_all(engine)
    if "label_auto_items" in existing and "covered_correct" not in {
            c["name"] for c in inspector.get_columns("label_auto_items")}:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE label_auto_items ADD COLUMN covered_correct "
                                 "BOOLEAN")
    if "label_auto_rounds" in existing and "gold_answers" not in {
            c["name"] for c in inspector.get_columns("label_auto_rounds")}:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE label_auto_rounds ADD COLUMN annotator_accuracy "
                                 "FLOAT")
            conn.exec_driver_sql("ALTER TABLE label_auto_rounds ADD COLUMN gold_answers "
                                 "INTEGER")
    if engine.dialect.name == "postgresql" and "label_jobs" in existing and any(
            c["name"] == "name" and getattr(c["type"], "length", 80) < 80
            for c in inspector.get_columns("label_jobs")):
        with engine.begin() as conn:  # review flows' job names are up to 70 characters
            conn.exec_driver_sql("ALTER TABLE label_jobs ALTER COLUMN name TYPE VARCHAR(80)")
    if "label_items" not in existing:
        return
    item_cols = {c["name"] for c in inspector.get_columns("label_items")}
    job_cols = {c["name"] for c in inspector.get_columns("label_jobs")}
    with engine.begin() as conn:
        if "failure_reason" not in job_cols:
            conn.exec_driver_sql("ALTER TABLE label_jobs ADD COLUMN failure_reason TEXT")
        if "failure_reason" not in item_cols:
            conn.exec_driver_sql("ALTER TABLE label_items ADD COLUMN failure_reason TEXT")
        if "state" not in item_cols:
            conn.exec_driver_sql("ALTER TABLE label_items ADD COLUMN state INTEGER NOT NULL "
                                 "DEFAULT 0")
            conn.exec_driver_sql("ALTER TABLE label_items ADD COLUMN wanted INTEGER NOT NULL "
                                 "DEFAULT 1")
            for job_id, spec in conn.execute(sa.select(jobs.c.id, jobs.c.spec)).all():
                per_item = int(json.loads(spec).get("workers_per_item", 1))
                conn.execute(items.update().where(items.c.job_id == job_id).values(
                    wanted=per_item, state=sa.case((items.c.answers >= per_item,
                                                    ItemState.LABELED), else_=ItemState.OPEN)))
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_label_items_next")
        ix_items_open.create(conn, checkfirst=True)

