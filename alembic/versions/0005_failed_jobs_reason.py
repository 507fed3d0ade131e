"""failed_jobs.reason: why a failed job was not retried again.

``tries_exhausted``, ``retry_until``, ``fail_on``, ``max_exceptions``,
``worker_lost`` ... (:class:`kashq.StopReason`), shown by ``queue:failed``.
Rows recorded before this revision keep an empty reason.

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kashq.db.migrate import prefixed

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        prefixed("failed_jobs"),
        sa.Column("reason", sa.String(32), nullable=False, server_default=sa.text("''")),
    )


def downgrade() -> None:
    with op.batch_alter_table(prefixed("failed_jobs")) as batch:
        batch.drop_column("reason")
