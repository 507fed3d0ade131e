"""kashq's first tables: the queue (kashq_jobs) and failed_jobs.

Every revision names its tables, indexes and constraints through
``prefixed()``: under the install's table prefix (``KASHQ_TABLE_PREFIX``),
unchanged without one.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)
_AWARE_DATETIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def upgrade() -> None:
    op.create_table(
        prefixed("kashq_jobs"),
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("raw", _LONG_TEXT, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("available_at", sa.Double(), nullable=False),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.UniqueConstraint("id", name=prefixed("uq_kashq_jobs_id")),
    )
    op.create_index(
        prefixed("ix_kashq_jobs_reserve"),
        prefixed("kashq_jobs"),
        [sa.column("queue"), sa.column("priority").desc(), sa.column("seq")],
    )
    op.create_table(
        prefixed("failed_jobs"),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("job_type", sa.String(255), nullable=False),
        sa.Column("payload", _LONG_TEXT, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("exception", _LONG_TEXT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failed_at", _AWARE_DATETIME, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.UniqueConstraint("uuid", name=prefixed("uq_failed_jobs_uuid")),
    )
    op.create_index(prefixed("ix_failed_jobs_failed_at"), prefixed("failed_jobs"), ["failed_at"])
    op.create_index(prefixed("ix_failed_jobs_queue"), prefixed("failed_jobs"), ["queue"])


def downgrade() -> None:
    op.drop_index(prefixed("ix_failed_jobs_queue"), table_name=prefixed("failed_jobs"))
    op.drop_index(prefixed("ix_failed_jobs_failed_at"), table_name=prefixed("failed_jobs"))
    op.drop_table(prefixed("failed_jobs"))
    op.drop_index(prefixed("ix_kashq_jobs_reserve"), table_name=prefixed("kashq_jobs"))
    op.drop_table(prefixed("kashq_jobs"))
