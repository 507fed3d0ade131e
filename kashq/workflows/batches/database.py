"""Batches in the ``job_batches`` and ``kashq_batch_jobs`` tables (SQLite, PostgreSQL, MySQL).

A batch is a row of counts; its jobs are rows of ``kashq_batch_jobs`` written
when it is dispatched (pending: ``state`` NULL). Counting a job is one short
transaction: the job's row and the batch's are read ``FOR UPDATE``, the
shared rule (:func:`~kashq.workflows.batches.base.count`) decides, and both
rows are written. The batch's row lock lasts those four statements, never a
job's run (Laravel's database batches lock it in a separate round trip per
job: laravel/framework#36478). A job counted already changes nothing, so a job
delivered twice is counted once. Database failures are one-line
:class:`~kashq.workflows.batches.base.BatchStoreError` messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import URL, Connection, Engine, Row, delete, insert, select, update

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database
from kashq.workflows.batches.base import (
    BatchRecord,
    BatchStoreError,
    Callbacks,
    Counted,
    MemberState,
    count,
    count_all,
)

_INSERT_CHUNK = 1000  # job rows per INSERT
UNSETTLED_S = 86_400.0  # how long after finishing a batch's callbacks are still swept
_FIELDS = tuple(field.name for field in dataclasses.fields(BatchRecord))


class DatabaseBatchStore:
    """Batches as rows of ``<table_prefix>job_batches`` and ``<table_prefix>kashq_batch_jobs``."""

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        table_prefix: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._db = Database(engine_or_url, error=BatchStoreError, table_prefix=table_prefix)
        self._now = clock.time
        self._batches = self._db.tables.job_batches
        self._jobs = self._db.tables.batch_jobs

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def create(self, record: BatchRecord, member_ids: list[str]) -> None:
        def write(conn: Connection) -> None:
            conn.execute(insert(self._batches), [_row(record)])
            self._insert_jobs(conn, record.id, member_ids, 0)

        self._db.run(write, what="creating a batch")

    def add(self, batch_id: str, member_ids: list[str]) -> BatchRecord:
        def write(conn: Connection) -> BatchRecord:
            record = self._locked(conn, batch_id)
            if record is None or record.finished_at is not None:
                gone = "is unknown" if record is None else "has finished"
                raise BatchStoreError(f"batch {batch_id} {gone}: no jobs can be added")
            c = self._jobs.c
            known = set(
                conn.execute(
                    select(c.job_id).where((c.batch_id == batch_id) & c.job_id.in_(member_ids))
                ).scalars()
            )
            fresh = [job_id for job_id in dict.fromkeys(member_ids) if job_id not in known]
            self._insert_jobs(conn, batch_id, fresh, record.total)
            record = dataclasses.replace(record, total=record.total + len(fresh))
            self._write(conn, record)
            return record

        return self._db.run(write, what="adding jobs to a batch")

    def count(
        self, batch_id: str, job_ids: Sequence[str], state: MemberState, now: float
    ) -> Counted | None:
        c = self._jobs.c
        ids = list(dict.fromkeys(job_ids))

        def write(conn: Connection) -> Counted | None:
            record = self._locked(conn, batch_id)  # the batch's row first, always
            if record is None:
                return None
            olds: dict[str, MemberState | None] = {}
            for start in range(0, len(ids), _INSERT_CHUNK):
                chunk = ids[start : start + _INSERT_CHUNK]
                query = select(c.job_id, c.state).where(
                    (c.batch_id == batch_id) & c.job_id.in_(chunk)
                )
                olds.update((row.job_id, row.state) for row in conn.execute(query))
            counted = count_all(record, olds, state, now)
            if counted is None:
                return None
            moved = [job_id for job_id, old in olds.items() if count(record, old, state, now)]
            for start in range(0, len(moved), _INSERT_CHUNK):
                chunk = moved[start : start + _INSERT_CHUNK]
                where = (c.batch_id == batch_id) & c.job_id.in_(chunk)
                conn.execute(update(self._jobs).where(where).values(state=state))
            self._write(conn, counted.record)
            return counted

        return self._db.run(write, what="counting batch jobs")

    def mark_pushed(self, batch_id: str, callbacks: Callbacks) -> None:
        b = self._batches.c
        pushed = b.pushed.bitwise_or(int(callbacks))
        self._db.run(
            lambda conn: conn.execute(
                update(self._batches).where(b.id == batch_id).values(pushed=pushed)
            ),
            what="marking batch callbacks pushed",
        )

    def get(self, batch_id: str) -> BatchRecord | None:
        query = select(self._batches).where(self._batches.c.id == batch_id)
        row = self._db.run(
            lambda conn: conn.execute(query).first(), what="reading a batch", atomic=False
        )
        return None if row is None else _record(row)

    def member_ids(self, batch_id: str, state: MemberState | None = None) -> list[str]:
        c = self._jobs.c
        query = select(c.job_id).where(c.batch_id == batch_id).order_by(c.seq)
        if state is not None:
            query = query.where(c.state == state)
        return self._db.run(
            lambda conn: list(conn.execute(query).scalars()),
            what="reading a batch's jobs",
            atomic=False,
        )

    def cancel(self, batch_id: str, now: float) -> BatchRecord | None:
        def write(conn: Connection) -> BatchRecord | None:
            record = self._locked(conn, batch_id)
            if record is not None and record.cancelled_at is None and record.finished_at is None:
                record = dataclasses.replace(record, cancelled_at=now)
                self._write(conn, record)
            return record

        return self._db.run(write, what="cancelling a batch")

    def recent(self, limit: int, before: float | None = None) -> list[BatchRecord]:
        b = self._batches.c
        query = select(self._batches).order_by(b.created_at.desc(), b.id.desc()).limit(limit)
        if before is not None:
            query = query.where(b.created_at < before)
        rows = self._db.run(
            lambda conn: conn.execute(query).all(), what="listing batches", atomic=False
        )
        return [_record(row) for row in rows]

    def unsettled(self) -> list[BatchRecord]:
        b = self._batches.c
        # A callback falls due while the batch runs (catch) or as it finishes (then,
        # finally): only batches running or finished lately are read (the index on
        # finished_at), not the whole table. ``pushed`` only holds bits of ``due``.
        recent = b.finished_at.is_(None) | (b.finished_at > self._now() - UNSETTLED_S)
        query = select(self._batches).where(recent & (b.due != b.pushed))
        rows = self._db.run(
            lambda conn: conn.execute(query).all(), what="reading batches", atomic=False
        )
        return [_record(row) for row in rows]

    def prune(self, finished_before: float) -> int:
        b = self._batches.c
        old = select(b.id).where(b.finished_at < finished_before)

        def drop(conn: Connection) -> int:
            ids = list(conn.execute(old).scalars())
            if ids:
                conn.execute(delete(self._jobs).where(self._jobs.c.batch_id.in_(ids)))
                conn.execute(delete(self._batches).where(b.id.in_(ids)))
            return len(ids)

        return self._db.run(drop, what="pruning batches")

    def _locked(self, conn: Connection, batch_id: str) -> BatchRecord | None:
        query = select(self._batches).where(self._batches.c.id == batch_id).with_for_update()
        row = conn.execute(query).first()
        return None if row is None else _record(row)

    def _write(self, conn: Connection, record: BatchRecord) -> None:
        values = _row(record)
        del values["id"]
        conn.execute(update(self._batches).where(self._batches.c.id == record.id).values(values))

    def _insert_jobs(self, conn: Connection, batch_id: str, ids: list[str], first_seq: int) -> None:
        rows = [
            {"batch_id": batch_id, "job_id": job_id, "seq": first_seq + n, "state": None}
            for n, job_id in enumerate(ids)
        ]
        for start in range(0, len(rows), _INSERT_CHUNK):
            conn.execute(insert(self._jobs), rows[start : start + _INSERT_CHUNK])


def _row(record: BatchRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _FIELDS}
    values["allow_failures"] = int(record.allow_failures)
    return values


def _record(row: Row[Any]) -> BatchRecord:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["allow_failures"] = bool(values["allow_failures"])
    return BatchRecord(**values)
