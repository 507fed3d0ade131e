"""job_results: each job's outcome and progress, kept by id until it expires.

Read by ``kashq.results``; expired rows are swept by the store itself.

Revision ID: 0006
Revises: 0005
Create Date: 2027-02-08 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def upgrade() -> None:
    op.create_table(
        prefixed("job_results"),
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("job_type", sa.String(255), nullable=False, server_default=sa.text("''")),
        sa.Column("queue", sa.String(200), nullable=False, server_default=sa.text("''")),
        sa.Column("value", _LONG_TEXT, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False, server_default=sa.text("''")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("progress", sa.Double(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("progress_at", sa.Double(), nullable=True),
        sa.Column("expires_at", sa.Double(), nullable=False),
    )
    op.create_index(prefixed("ix_job_results_expires_at"), prefixed("job_results"), ["expires_at"])


def downgrade() -> None:
    op.drop_index(prefixed("ix_job_results_expires_at"), table_name=prefixed("job_results"))
    op.drop_table(prefixed("job_results"))
