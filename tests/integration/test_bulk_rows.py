"""``kashq.db.bulk.insert_rows``: many rows in one go (``COPY`` on PostgreSQL), on every
database: every value comes back as written, a refused row writes none, and a connection
the server dropped is reported as lost, so the caller's one retry succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from kashq.db.bulk import insert_rows
from kashq.db.engine import Database
from kashq.events.database import DatabaseEventStore
from kashq.exceptions import DriverError
from tests.support.databases import KINDS, database

AWKWARD = ["tab\there", "new\nline", "back\\slash", "naïve ☃", "\\N", "", "quote ' \" ,"]


def rows(n: int) -> list[dict[str, object]]:
    return [
        {
            "job_id": f"job-{i}",
            "type": "started",
            "job_type": "tests.Job",
            "queue": "default",
            "attempt": i,
            "at": 1_700_000_000.123456 + i,
            "host": "host",
            "pid": 4242,
            "details": AWKWARD[i % len(AWKWARD)],
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_every_value_comes_back_as_written_and_a_refused_row_writes_none(kind, tmp_path: Path):
    with database(kind, tmp_path, migrated=True) as url:
        db = Database(url, error=DriverError)
        table = db.tables.job_events
        try:
            written = rows(50)
            db.run(lambda conn: insert_rows(conn, table, written), what="writing")
            c = table.c
            columns = [c[name] for name in written[0]]
            read = db.run(
                lambda conn: conn.execute(select(*columns).order_by(c.id)).all(), what="reading"
            )
            assert [dict(r._mapping) for r in read] == written

            refused_row = rows(3)
            refused_row[2]["job_type"] = None  # the column is NOT NULL
            with pytest.raises(DriverError) as refused:
                db.run(lambda conn: insert_rows(conn, table, refused_row), what="writing")
            assert "\n" not in str(refused.value)
            count = db.run(lambda conn: len(conn.execute(select(c.id)).all()), what="counting")
            assert count == 50, "the refused batch wrote nothing"
        finally:
            db.close()


def test_postgres_a_connection_dropped_under_the_copy_is_lost_and_the_write_retried(
    tmp_path: Path,
):
    with database("postgres", tmp_path, migrated=True) as url:
        store = DatabaseEventStore(url)
        admin = Database(url, error=DriverError)
        table = store._db.tables.job_events
        calls: list[bool] = []
        invalidated: list[bool] = []  # outside: the failed rollback replaces any assert

        def write(conn):
            calls.append(True)
            if len(calls) == 1:  # the server drops this connection before the copy
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                admin.run(
                    lambda a: a.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}),
                    what="terminating",
                )
                with pytest.raises(DBAPIError) as lost:
                    insert_rows(conn, table, rows(1))
                invalidated.append(lost.value.connection_invalidated)
                raise lost.value
            insert_rows(conn, table, rows(2))

        try:
            store._db.run(write, what="recording events")
            assert invalidated == [True], "the copy's error reports the connection lost"
            assert len(calls) == 2, "retried once, on a new connection"
            assert [e.attempt for e in store.get_job_events("job-1")] == [1]
        finally:
            store.close()
            admin.close()
