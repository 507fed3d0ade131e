"""kashq_job_once: the ids push_once stored, each remembered until expires_at.

Written by ``Driver.push_once`` (workflows' chain steps and callbacks).

Revision ID: 0009
Revises: 0008
Create Date: 2027-03-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_JOB_ID = sa.String(36).with_variant(mysql.VARCHAR(36, collation="utf8mb4_bin"), *_MYSQL)


def upgrade() -> None:
    table = prefixed("kashq_job_once")
    op.create_table(
        table,
        sa.Column("id", _JOB_ID, primary_key=True),
        sa.Column("expires_at", sa.Double(), nullable=False),
    )
    op.create_index(prefixed("ix_kashq_job_once_expires_at"), table, ["expires_at"])


def downgrade() -> None:
    table = prefixed("kashq_job_once")
    op.drop_index(prefixed("ix_kashq_job_once_expires_at"), table_name=table)
    op.drop_table(table)
