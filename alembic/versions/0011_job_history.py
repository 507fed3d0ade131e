"""job_history (the metrics history) and an index of failed_jobs by job type.

``job_history`` is read and written by ``kashq.history``. The failed jobs get
an index by job type (with the id, for pages newest first), which the
dashboard's filter by job type uses.

Revision ID: 0011
Revises: 0010
Create Date: 2027-03-20 00:00:01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_QUEUE = sa.String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_bin"), *_MYSQL)


def upgrade() -> None:
    zero = sa.text("0")
    op.create_table(
        prefixed("job_history"),
        sa.Column("span", sa.Integer(), primary_key=True),
        sa.Column("minute", sa.BigInteger(), primary_key=True),
        sa.Column("queue", _QUEUE, primary_key=True),
        sa.Column("job_type", sa.String(255), primary_key=True),
        sa.Column("done", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("failed", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("retried", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("runs", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("run_ms", sa.Double(), nullable=False, server_default=zero),
        sa.Column("run_max_ms", sa.Double(), nullable=False, server_default=zero),
        sa.Column("waits", sa.Integer(), nullable=False, server_default=zero),
        sa.Column("wait_ms", sa.Double(), nullable=False, server_default=zero),
        sa.Column("wait_max_ms", sa.Double(), nullable=False, server_default=zero),
    )

    failed = prefixed("failed_jobs")
    op.create_index(prefixed("ix_failed_jobs_job_type"), failed, ["job_type", "id"])


def downgrade() -> None:
    failed = prefixed("failed_jobs")
    op.drop_index(prefixed("ix_failed_jobs_job_type"), table_name=failed)
    op.drop_table(prefixed("job_history"))
