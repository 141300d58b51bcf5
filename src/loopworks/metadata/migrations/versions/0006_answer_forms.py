"""The crowd form a built-in labeling job's answer came from (issue 15).

A built-in task type whose page is a Liquid template (a job made over the SageMaker API with
a UiTemplateS3Uri) stores the answer in its own shape in ``label_answers.answer`` and the
form's JSON as the crowd elements recorded it in ``label_answers.form``: Ground Truth's
worker-response documents carry that form as ``answerContent``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("label_answers") as batch:
        batch.add_column(sa.Column("form", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label_answers") as batch:
        batch.drop_column("form")
