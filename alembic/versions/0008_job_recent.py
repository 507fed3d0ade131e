"""job_recent: the jobs that ended recently, per queue and outcome, trimmed by age and count.

Read and trimmed by ``kashq.recent``.

Revision ID: 0008
Revises: 0007
Create Date: 2027-02-20 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_QUEUE = sa.String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_bin"), *_MYSQL)
_JOB_ID = sa.String(36).with_variant(mysql.VARCHAR(36, collation="utf8mb4_bin"), *_MYSQL)


def upgrade() -> None:
    table = prefixed("job_recent")
    op.create_table(
        table,
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("queue", _QUEUE, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("job_id", _JOB_ID, nullable=False),
        sa.Column("job_type", sa.String(255), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.UniqueConstraint("queue", "outcome", "job_id", name=prefixed("uq_job_recent_job")),
    )
    op.create_index(
        prefixed("ix_job_recent_list"), table, ["queue", "outcome", "finished_at", "job_id"]
    )
    op.create_index(prefixed("ix_job_recent_finished_at"), table, ["finished_at"])


def downgrade() -> None:
    table = prefixed("job_recent")
    op.drop_index(prefixed("ix_job_recent_finished_at"), table_name=table)
    op.drop_index(prefixed("ix_job_recent_list"), table_name=table)
    op.drop_table(table)
