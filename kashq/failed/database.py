"""The ``failed_jobs`` table as a :class:`~kashq.failed.base.FailedJobStore`.

Works on SQLite (created on first use), PostgreSQL and MySQL/MariaDB (run
``kashq migrate`` first). ``log`` is idempotent by uuid even when two workers
record the same job at once: the unique index decides, and the loser returns
the winner's record. Every database failure is a one-line
:class:`~kashq.exceptions.FailedStoreError`, which the worker answers by
parking the job until the store is back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Row,
    Select,
    Table,
    delete,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from kashq.db.engine import Database, delete_in_chunks
from kashq.db.schema import as_utc
from kashq.exceptions import FailedStoreError
from kashq.failed.base import FailedFilter, FailedJob, numeric_id

_FORGET_CHUNK = 500  # ids per DELETE

_COLUMNS = (
    "uuid",
    "connection",
    "queue",
    "job_type",
    "payload",
    "error",
    "exception",
    "attempts",
    "failed_at",
    "host",
    "pid",
    "reason",
)


class _Duplicate(Exception):
    """A failed job with this uuid is already recorded."""


class DatabaseFailedJobStore:
    """Failed jobs in the ``failed_jobs`` table (``<table_prefix>failed_jobs``)."""

    def __init__(
        self, engine_or_url: Engine | str | URL, *, table_prefix: str | None = None
    ) -> None:
        self._db = Database(engine_or_url, error=FailedStoreError, table_prefix=table_prefix)
        self._table = self._db.tables.failed_jobs

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def log(self, job: FailedJob) -> FailedJob:
        values = {name: getattr(job, name) for name in _COLUMNS}
        values["failed_at"] = as_utc(job.failed_at)
        statement = insert(self._table).values(values)

        def insert_row(conn: Connection) -> int:
            try:
                key = conn.execute(statement).inserted_primary_key
            except IntegrityError:
                raise _Duplicate() from None
            if key is None or key[0] is None:  # pragma: no cover - every backend reports it
                raise FailedStoreError("the database did not report the new failed job's id")
            return int(key[0])

        for _ in range(3):
            try:
                new_id = self._db.run(insert_row, what="recording a failed job", atomic=False)
            except _Duplicate:
                # Already recorded: by another worker a moment ago (the same
                # failure), or an earlier failure of a retried job (replace it).
                existing = self.find(job.uuid)
                if existing is None:
                    continue  # ... and forgotten in between: record it again
                if values["failed_at"] <= existing.failed_at:
                    return existing
                self._replace(existing, values)
                return dataclasses.replace(job, id=existing.id, failed_at=values["failed_at"])
            return dataclasses.replace(job, id=new_id, failed_at=values["failed_at"])
        raise FailedStoreError(f"could not record failed job {job.uuid}: it keeps vanishing")

    def all(self, *, queue: str | None = None, limit: int | None = None) -> list[FailedJob]:
        c = self._table.c
        query = select(self._table).order_by(c.failed_at.desc(), c.id.desc())
        if queue is not None:
            query = query.where(c.queue == queue)
        if limit is not None:
            query = query.limit(limit)
        return [_job(row) for row in self._read(query, "listing failed jobs")]

    def page(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        where: FailedFilter | None = None,
    ) -> list[FailedJob]:
        c = self._table.c
        query = select(self._table).order_by(c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(c.id < before_id)
        query = self._filtered(query, FailedFilter(queue, job_type), where)
        return [_job(row) for row in self._read(query, "listing failed jobs")]

    def _filtered(self, query: Select[Any], *filters: FailedFilter | None) -> Select[Any]:
        c = self._table.c
        for f in filters:
            if f is None:
                continue
            if f.queue is not None:
                query = query.where(c.queue == f.queue)
            if f.job_type is not None:
                query = query.where(c.job_type == f.job_type)
            if f.error:
                query = query.where(c.error.icontains(f.error, autoescape=True))
            if f.since is not None:
                query = query.where(c.failed_at >= f.since)
            if f.until is not None:
                query = query.where(c.failed_at < f.until)
        return query

    def find(self, key: int | str) -> FailedJob | None:
        query = select(self._table).where(_key(self._table, key, self._db.dialect))
        rows = self._read(query, "finding a failed job")
        return _job(rows[0]) if rows else None

    def between(
        self, first_id: int, last_id: int, *, queue: str | None = None, limit: int | None = None
    ) -> list[FailedJob]:
        last_id = min(last_id, _max_id(self._db.dialect))  # beyond the column: none there
        if first_id > last_id:
            return []
        c = self._table.c
        query = select(self._table).where(c.id.between(max(first_id, 0), last_id))
        if queue is not None:
            query = query.where(c.queue == queue)
        query = query.order_by(c.id).limit(limit)
        return [_job(row) for row in self._read(query, "listing failed jobs by id")]

    def _replace(self, existing: FailedJob, values: dict[str, Any]) -> None:
        """Overwrite ``existing`` with a later failure of the same job (if still older)."""
        changes = {name: value for name, value in values.items() if name != "uuid"}
        statement = (
            update(self._table)
            .where(self._table.c.id == existing.id)
            .where(self._table.c.failed_at < values["failed_at"])
            .values(changes)
        )
        self._db.run(lambda conn: conn.execute(statement), what="recording a failed job")

    def forget(self, key: int | str, *, failed_at: datetime | None = None) -> bool:
        condition = _key(self._table, key, self._db.dialect)
        if failed_at is not None:
            condition = condition & (self._table.c.failed_at == as_utc(failed_at))
        result = self._db.run(
            lambda conn: conn.execute(delete(self._table).where(condition)),
            what="forgetting a failed job",
            atomic=False,
        )
        return bool(result.rowcount)

    def forget_many(self, ids: Sequence[int]) -> int:
        c, removed = self._table.c, 0
        for start in range(0, len(ids), _FORGET_CHUNK):
            chunk = [int(i) for i in ids[start : start + _FORGET_CHUNK]]
            statement = delete(self._table).where(c.id.in_(chunk))

            def run(conn: Connection, statement: Any = statement) -> int:
                return int(conn.execute(statement).rowcount)

            removed += self._db.run(run, what="forgetting failed jobs", atomic=False)
        return removed

    def flush(self, *, older_than_hours: float | None = None) -> int:
        if older_than_hours is not None:
            cutoff = datetime.now(timezone.utc) - timedelta(hours=older_than_hours)
            return self.prune(cutoff)
        result = self._db.run(
            lambda conn: conn.execute(delete(self._table)),
            what="flushing failed jobs",
            atomic=False,
        )
        return int(result.rowcount)

    def prune(self, before: datetime, *, chunk_size: int = 1000) -> int:
        return delete_in_chunks(
            self._db, self._table, self._table.c.failed_at < as_utc(before), chunk_size=chunk_size,
            what="pruning failed jobs",
        )  # fmt: skip

    def count(self, *, queue: str | None = None, where: FailedFilter | None = None) -> int:
        query = select(func.count()).select_from(self._table)
        query = self._filtered(query, FailedFilter(queue), where)
        rows = self._read(query, "counting failed jobs")
        return int(rows[0][0])

    def counts_by_queue(self) -> dict[str, int]:
        c = self._table.c
        query = select(c.queue, func.count().label("n")).group_by(c.queue)
        rows = self._read(query, "counting failed jobs")
        return {r._mapping["queue"]: int(r._mapping["n"]) for r in rows}

    def close(self) -> None:
        """Release the store's connections (if it created its engine)."""
        self._db.close()

    def _read(self, query: Select[Any], what: str) -> list[Row[Any]]:
        return self._db.run(lambda conn: list(conn.execute(query).all()), what=what, atomic=False)


def _key(table: Table, key: int | str, dialect: str) -> ColumnElement[bool]:
    """A digit string or int means the numeric id; anything else is a uuid.

    An id beyond what the column holds names no record: it must not reach the
    database, where it overflows (SQLite) or fails as "integer out of range".
    """
    number = numeric_id(key)
    if number is None:
        return table.c.uuid == key
    return table.c.id == number if 0 <= number <= _max_id(dialect) else false()


def _max_id(dialect: str) -> int:
    """The largest ``failed_jobs.id``: INTEGER is 64 bits on SQLite, 32 elsewhere."""
    return 2**63 - 1 if dialect == "sqlite" else 2**31 - 1


def _job(row: Row[Any]) -> FailedJob:
    data = row._mapping
    return FailedJob(
        id=int(data["id"]),
        **{name: data[name] for name in _COLUMNS},
    )
