"""Every table of the metadata database, declared once, in one registry (:data:`metadata`).

The capabilities keep their logic in their own packages and use these tables from here, so
the schema has one history: Alembic migrations under ``loopworks/metadata/migrations``
change it (:mod:`loopworks.metadata.schema` applies them), and nothing creates a table on
its own. Timestamps are :class:`UtcDateTime`: written as UTC and read back aware, on SQLite
and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loopworks.clock import as_utc

__all__ = [
    "UtcDateTime", "answers", "auto_items", "auto_rounds", "console_queries", "credentials",
    "feature_groups", "idempotency", "items", "ix_items_open", "jobs", "leases",
    "machine_labels", "metadata", "outbox", "processing_jobs", "review_flows", "review_loops",
    "review_passes",
    "s3_buckets", "s3_mounts", "s3_objects", "s3_parts", "s3_uploads", "sagemaker_resources",
    "sign_in_failures", "skips",
    "team_members", "teams", "workers",
]


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp kept in UTC and always read back timezone-aware.

    SQLite has no time zones: it gets the UTC wall time (as loopworks always wrote it) and
    hands it back naive, which this type makes aware again. PostgreSQL keeps
    ``timestamptz``. A naive value written is taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        """UTC in, without a zone on SQLite (its text form sorts and compares as before)."""
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        """Aware UTC out, whatever the backend returned."""
        return None if value is None else as_utc(value)


metadata = sa.MetaData()

# ------------------------------------------------------------------------ feature store
feature_groups = sa.Table(
    "feature_groups", metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("record_id", sa.String(255), nullable=False),
    sa.Column("event_time", sa.String(255), nullable=False),
    sa.Column("definitions", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False, default="{}"),
    sa.Column("transformation", sa.Text, nullable=False, default="{}"),
    sa.Column("ttl_seconds", sa.Float, nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)
#: The last queries each person ran in the Studio's SQL console.
console_queries = sa.Table(
    "console_queries", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("worker_id", sa.Integer, nullable=False, index=True),
    sa.Column("sql", sa.Text, nullable=False),
    sa.Column("ran_at", UtcDateTime, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
)

# ---------------------------------------------------------------------------- workforce
workers = sa.Table(
    "workers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
teams = sa.Table(
    "teams", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
)
team_members = sa.Table(
    "team_members", metadata,
    sa.Column("team_id", sa.ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True),
)
#: API tokens, one-time login links and browser sessions, by the SHA-256 digest of the
#: secret (never the secret itself).
credentials = sa.Table(
    "credentials", metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("worker_id", sa.ForeignKey("workers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # api_token | login_link | session
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("used_at", UtcDateTime, nullable=True),
)
#: Failed password sign-ins per name and per address, in fixed windows.
sign_in_failures = sa.Table(
    "sign_in_failures", metadata,
    sa.Column("key", sa.String(160), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("window_start", UtcDateTime, nullable=False),
)

# ----------------------------------------------------------------------------- labeling
jobs = sa.Table(
    "label_jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # 63 characters, or 70 for a review flow's job (``review-`` + the flow's name).
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column("team", sa.String(63), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("failure_reason", sa.Text, nullable=True),
)
#: ``state``: 0 open, 1 labeled, 2 failed, 3 held (``loopworks.labeling.schema.ItemState``);
#: ``wanted``: how many answers the item wants now.
items = sa.Table(
    "label_items", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.ForeignKey("label_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("answers", sa.Integer, nullable=False, default=0),
    sa.Column("leases", sa.Integer, nullable=False, default=0),
    sa.Column("state", sa.Integer, nullable=False, default=0),
    sa.Column("wanted", sa.Integer, nullable=False, default=1),
    sa.Column("failure_reason", sa.Text, nullable=True),
)
#: Matches next_task's filter and order: open items of a job, most-answered first, then
#: input order; ``leases`` and ``wanted`` ride along so the quota test needs no row lookup.
#: Labeled and failed items fall out of the range, so the walk never passes finished work.
ix_items_open = sa.Index("ix_label_items_open", items.c.job_id, items.c.state,
                         items.c.answers.desc(), items.c.seq, items.c.leases, items.c.wanted)
leases = sa.Table(
    "label_leases", metadata,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("accepted_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Index("ix_label_leases_worker", "job_id", "worker_id"),
)
answers = sa.Table(
    "label_answers", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), nullable=False),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("worker_id", sa.Integer, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("accepted_at", UtcDateTime, nullable=False),
    sa.Column("submitted_at", UtcDateTime, nullable=False),
    #: The crowd form's JSON when a built-in job's page was a template (else null).
    sa.Column("form", sa.Text, nullable=True),
    sa.UniqueConstraint("item_id", "worker_id", name="uq_answer_item_worker"),
    sa.Index("ix_label_answers_worker", "job_id", "worker_id"),
)
skips = sa.Table(
    "label_skips", metadata,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Index("ix_label_skips_worker", "job_id", "worker_id"),
)
#: Answers' idempotency keys (``Idempotency-Key``): a client that retries an answer whose
#: reply it never got is given the stored result instead of a 409. Kept for a day.
idempotency = sa.Table(
    "label_idempotency", metadata,
    sa.Column("worker_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("item_id", sa.Integer, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, index=True),
)
#: Webhook deliveries, written in the transaction that caused the event (so none is lost)
#: and crossed off only after the receiver said 2xx (at least once).
outbox = sa.Table(
    "label_webhook_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    sa.Column("gave_up_at", UtcDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_label_outbox_due", "delivered_at", "gave_up_at", "next_attempt_at"),
)
#: Automated labeling: the items people were asked to label and why (``validation``: the
#: held-out random sample thresholds are chosen on; ``training``: the first random sample
#: and each round's batch). ``covered_round``: for validation items, the round whose model
#: and threshold would have machine-labeled it (``covered_correct``: and whether that model
#: was right; NULL: it stands for an item that round sent to people), so later thresholds
#: are chosen on the validation items that still look like the items left (autolabel.py).
auto_items = sa.Table(
    "label_auto_items", metadata,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("covered_round", sa.Integer, nullable=True),
    sa.Column("covered_correct", sa.Boolean, nullable=True),
)
#: Labels a model gave, with what it was sure of and which model version gave them.
machine_labels = sa.Table(
    "label_machine", metadata,
    sa.Column("item_id", sa.ForeignKey("label_items.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(160), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
#: One row per automated-labeling round. A round is claimed by inserting its row with
#: ``state = 'running'`` and a token (the primary key makes two claims of one round
#: impossible); it is filled in and set ``done`` in the transaction that writes its labels.
auto_rounds = sa.Table(
    "label_auto_rounds", metadata,
    sa.Column("job_id", sa.ForeignKey("label_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
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
    sa.Column("created_at", UtcDateTime, nullable=True),
    sa.Column("seconds", sa.Float, nullable=True),
    sa.Column("cpu_seconds", sa.Float, nullable=True),
)

# ------------------------------------------------------------------------------- review
review_flows = sa.Table(
    "review_flows", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("evaluated", sa.Integer, nullable=False, default=0),
    sa.Column("activated", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
review_loops = sa.Table(
    "review_loops", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow_id", sa.ForeignKey("review_flows.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("input_content", sa.Text, nullable=False),
    sa.Column("conditions_fired", sa.Text, nullable=False),
    sa.Column("item_id", sa.Integer, nullable=True),
    sa.Column("failure_code", sa.String(32), nullable=True),
    sa.Column("failure_reason", sa.Text, nullable=True),
    sa.Column("output_uri", sa.Text, nullable=True),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("completed_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("flow_id", "name", name="uq_review_loop_name"),
    sa.Index("ix_review_loops_status", "flow_id", "status", "id"),
    sa.Index("ix_review_loops_item", "item_id"),
)
#: Inputs that were evaluated and did not go to people: a repeated call with the same name
#: and content is answered from here and not counted twice in the flow's share.
review_passes = sa.Table(
    "review_passes", metadata,
    sa.Column("flow_id", sa.ForeignKey("review_flows.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
)

# ----------------------------------------------------------------- object store
#: S3 keys sort as S3 sorts them, by their UTF-8 bytes: PostgreSQL compares them in the "C"
#: collation (SQLite's default, BINARY, already does).
_S3_KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")
s3_buckets = sa.Table(
    "s3_buckets", metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("owner_id", sa.Integer, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
s3_objects = sa.Table(
    "s3_objects", metadata,
    sa.Column("bucket", sa.ForeignKey("s3_buckets.name", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("key", _S3_KEY, primary_key=True),
    sa.Column("blob", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(80), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("user_metadata", sa.Text, nullable=False),
    sa.Column("modified_at", UtcDateTime, nullable=False),
)
#: A bucket prefix served read-only from a folder loopworks writes (a feature group's Delta
#: table at its S3 URI): its objects are the folder's files, listed and read in place.
s3_mounts = sa.Table(
    "s3_mounts", metadata,
    sa.Column("bucket", sa.ForeignKey("s3_buckets.name", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("prefix", _S3_KEY, primary_key=True),
    sa.Column("directory", sa.Text, nullable=False),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
#: What the /aws endpoint keeps of SageMaker's own resources beyond the feature store (work
#: teams, human task UIs): one JSON document per kind and name.
sagemaker_resources = sa.Table(
    "sagemaker_resources", metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
#: Processing jobs that run a user's script (``loopworks.processing.records``): the job's
#: record as a JSON document, its status, which process runs it and when that process last
#: said it was alive, and whether someone asked it to stop.
processing_jobs = sa.Table(
    "processing_jobs", metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("runner", sa.String(255), nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=True),
    sa.Column("stop_requested", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
s3_uploads = sa.Table(
    "s3_uploads", metadata,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.ForeignKey("s3_buckets.name", ondelete="CASCADE"), nullable=False),
    sa.Column("key", _S3_KEY, nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("user_metadata", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)
s3_parts = sa.Table(
    "s3_parts", metadata,
    sa.Column("upload_id", sa.ForeignKey("s3_uploads.upload_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("part_number", sa.Integer, primary_key=True),
    sa.Column("blob", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(80), nullable=False),
)
