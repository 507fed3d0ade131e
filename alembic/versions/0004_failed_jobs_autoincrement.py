"""SQLite's failed_jobs.id never hands out an id twice (AUTOINCREMENT).

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table
plus one, so once the newest records are deleted (or the table emptied) their
ids come back, and ``queue:forget 3`` typed from an old listing deletes
another job. SQLite cannot change a column's key in place: the table is
rebuilt (Alembic's batch mode: create, copy every row with its id, rename),
keeping its data, indexes and unique uuid. PostgreSQL sequences and MySQL /
MariaDB AUTO_INCREMENT (persisted since MariaDB 10.2.4 and MySQL 8.0) never
reuse an id: nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from kashq.db.migrate import prefixed

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _rebuild_on_sqlite(autoincrement=True)


def downgrade() -> None:
    _rebuild_on_sqlite(autoincrement=False)


def _rebuild_on_sqlite(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        prefixed("failed_jobs"),
        recreate="always",
        table_kwargs={"sqlite_autoincrement": autoincrement},
    ):
        pass  # the rebuild itself is the change
