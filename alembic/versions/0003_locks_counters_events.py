"""Locks (kashq_locks), windowed counters (kashq_counters) and the event store (job_events).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_NAME = sa.String(191).with_variant(mysql.VARCHAR(191, collation="utf8mb4_bin"), *_MYSQL)
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        prefixed("kashq_locks"),
        sa.Column("name", _NAME, primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
    )
    op.create_table(
        prefixed("kashq_counters"),
        sa.Column("name", _NAME, primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
    )
    op.create_table(
        prefixed("job_events"),
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("job_type", sa.String(255), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
    )
    op.create_index(prefixed("ix_job_events_job_id"), prefixed("job_events"), ["job_id", "id"])
    op.create_index(prefixed("ix_job_events_at"), prefixed("job_events"), ["at"])


def downgrade() -> None:
    op.drop_index(prefixed("ix_job_events_at"), table_name=prefixed("job_events"))
    op.drop_index(prefixed("ix_job_events_job_id"), table_name=prefixed("job_events"))
    op.drop_table(prefixed("job_events"))
    op.drop_table(prefixed("kashq_counters"))
    op.drop_table(prefixed("kashq_locks"))
