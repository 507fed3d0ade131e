"""Control records (kashq_control): the restart signal and supervisors' live stats.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
# MySQL compares strings case-insensitively by default; control names are exact.
_NAME = sa.String(191).with_variant(mysql.VARCHAR(191, collation="utf8mb4_bin"), *_MYSQL)


def upgrade() -> None:
    op.create_table(
        prefixed("kashq_control"),
        sa.Column("name", _NAME, primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table(prefixed("kashq_control"))
