"""kashq_job_tags: the tag index of waiting and reserved jobs; an index of jobs by state and time.

``kashq_job_tags`` holds one row per tag of each job that has tags, written with
the job and deleted when it leaves (see ``kashq.drivers.database``).
``ix_kashq_jobs_state`` serves the listing of delayed and reserved jobs and the
oldest ready job of a queue (``Driver.list_jobs``, ``Driver.oldest_ready``).

Revision ID: 0007
Revises: 0006
Create Date: 2027-02-15 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from kashq.db.migrate import prefixed

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported, so this revision never changes.
_MYSQL = ("mysql", "mariadb")
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TAG = sa.String(100).with_variant(mysql.VARCHAR(100, collation="utf8mb4_bin"), *_MYSQL)


def upgrade() -> None:
    op.create_table(
        prefixed("kashq_job_tags"),
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("tag", _TAG, nullable=False),
        sa.Column("job_id", sa.String(36), nullable=False),
    )
    op.create_index(
        prefixed("ix_kashq_job_tags_tag"), prefixed("kashq_job_tags"), ["queue", "tag", "seq"]
    )
    op.create_index(prefixed("ix_kashq_job_tags_job_id"), prefixed("kashq_job_tags"), ["job_id"])
    op.create_index(
        prefixed("ix_kashq_jobs_state"),
        prefixed("kashq_jobs"),
        ["queue", "token", "available_at", "seq"],
    )


def downgrade() -> None:
    op.drop_index(prefixed("ix_kashq_jobs_state"), table_name=prefixed("kashq_jobs"))
    op.drop_index(prefixed("ix_kashq_job_tags_job_id"), table_name=prefixed("kashq_job_tags"))
    op.drop_index(prefixed("ix_kashq_job_tags_tag"), table_name=prefixed("kashq_job_tags"))
    op.drop_table(prefixed("kashq_job_tags"))
