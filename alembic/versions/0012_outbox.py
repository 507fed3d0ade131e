"""kashq_outbox: jobs dispatched in an application's transaction, for the relay.

Read and written by ``kashq.outbox``: a row per job dispatched with
``dispatch(using=...)`` for a connection other than the database, deleted
once the relay has pushed it.

Revision ID: 0012
Revises: 0011
Create Date: 2027-04-10 00:00:01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def upgrade() -> None:
    op.create_table(
        prefixed("kashq_outbox"),
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("raw", _LONG_TEXT, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table(prefixed("kashq_outbox"))
