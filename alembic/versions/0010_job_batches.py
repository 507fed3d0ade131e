"""job_batches and kashq_batch_jobs: batches, their counts, and their jobs.

Read and written by ``kashq.workflows.batches``.

Revision ID: 0010
Revises: 0009
Create Date: 2027-03-06 00:00:01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_JOB_ID = sa.String(36).with_variant(mysql.VARCHAR(36, collation="utf8mb4_bin"), *_MYSQL)
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def upgrade() -> None:
    batches = prefixed("job_batches")
    zero = sa.text("0")
    op.create_table(
        batches,
        sa.Column("id", _JOB_ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("failed", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("cancelled", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("allow_failures", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("due", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("pushed", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("options", _LONG_TEXT, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("cancelled_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
    )
    op.create_index(prefixed("ix_job_batches_created_at"), batches, ["created_at", "id"])
    op.create_index(prefixed("ix_job_batches_finished_at"), batches, ["finished_at"])
    members = prefixed("kashq_batch_jobs")
    op.create_table(
        members,
        sa.Column("batch_id", _JOB_ID, primary_key=True),
        sa.Column("job_id", _JOB_ID, primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=True),
    )
    op.create_index(prefixed("ix_kashq_batch_jobs_order"), members, ["batch_id", "seq"])


def downgrade() -> None:
    members = prefixed("kashq_batch_jobs")
    op.drop_index(prefixed("ix_kashq_batch_jobs_order"), table_name=members)
    op.drop_table(members)
    batches = prefixed("job_batches")
    op.drop_index(prefixed("ix_job_batches_finished_at"), table_name=batches)
    op.drop_index(prefixed("ix_job_batches_created_at"), table_name=batches)
    op.drop_table(batches)
