"""Recent jobs in the ``job_recent`` table (SQLite, PostgreSQL, MySQL/MariaDB).

One row per job and list (queue, outcome), unique on ``(queue, outcome,
job_id)``: a job that ends again replaces its row. :meth:`~DatabaseRecentStore.add`
upserts a batch and trims every list it touched in the same transaction:
rows finished at or before the age cutoff go, and so does every row from
the ``keep_max + 1``-th newest down, found by one ``OFFSET`` read on the
``(queue, outcome, finished_at, job_id)`` index and deleted by range (no
``LIMIT`` in a subquery, which MariaDB refuses). Lists nobody writes to any
more are swept of rows past their age at most once a minute of the store's
clock (``SWEEP_EVERY_S``), a chunk of rows per transaction, and by
:meth:`~DatabaseRecentStore.prune`. Pages are keyset reads on the same
index, newest first. Database failures are one-line
:class:`~kashq.recent.base.RecentStoreError` (a ``DriverError``).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Row,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database, delete_in_chunks
from kashq.db.schema import MYSQL
from kashq.recent.base import (
    ENDED,
    Bounds,
    Ended,
    RecentJob,
    RecentStoreError,
    check_page,
    decode_cursor,
    encode_cursor,
)

SWEEP_EVERY_S = 60.0
_SWEEP_CHUNK = 1000  # rows deleted per transaction
_COLUMNS = ("job_type", "finished_at", "attempts", "duration_s", "tags", "error")


class DatabaseRecentStore(Bounds):
    """Recently ended jobs as rows of ``job_recent`` (``<table_prefix>job_recent``)."""

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        clock: Clock = SYSTEM_CLOCK,
        table_prefix: str | None = None,
        keep_s: float = 3600.0,
        keep_max: int = 10_000,
    ) -> None:
        super().__init__(clock, keep_s, keep_max)
        self._db = Database(engine_or_url, error=RecentStoreError, table_prefix=table_prefix)
        self._table = self._db.tables.job_recent
        self._upsert = _upsert(self._db.dialect, self._table)
        self._sweep_lock = threading.Lock()
        self._next_sweep_at = -math.inf

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def add(self, jobs: Sequence[RecentJob]) -> None:
        if not self._keeps(jobs):
            return
        now = self._clock.time()
        cutoff = now - self._keep_s
        latest: dict[tuple[str, str, str], RecentJob] = {}
        for job in jobs:  # one row per job and list (an upsert may not touch a row twice)
            if job.outcome not in ENDED:
                raise ValueError(f"outcome must be one of {', '.join(ENDED)}: {job!r}")
            key = (job.queue, job.outcome, job.job_id)
            kept = latest.get(key)
            if job.finished_at > cutoff and (kept is None or job.finished_at >= kept.finished_at):
                latest[key] = job
        if not latest:
            return
        rows = [_row(latest[key]) for key in sorted(latest)]  # one lock order for every writer
        touched = sorted({(queue, outcome) for queue, outcome, _ in latest})

        def write(conn: Connection) -> None:
            conn.execute(self._upsert, rows)
            for queue, outcome in touched:
                self._trim(conn, queue, outcome, cutoff)

        self._db.run(write, what="listing recent jobs")
        self._maybe_sweep(now)

    def page(
        self, queue: str, outcome: Ended, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[RecentJob], str | None]:
        check_page(outcome, limit)
        c = self._table.c
        where = self._list(queue, outcome) & (c.finished_at > self._cutoff())
        if cursor is not None:
            at, job_id = decode_cursor(cursor)
            where &= or_(c.finished_at < at, and_(c.finished_at == at, c.job_id < job_id))
        query = (
            select(self._table)
            .where(where)
            .order_by(c.finished_at.desc(), c.job_id.desc())
            .limit(limit + 1)  # one more: is there a next page?
        )
        rows = self._db.run(
            lambda conn: conn.execute(query).all(), what="reading recent jobs", atomic=False
        )
        page = [_record(row) for row in rows]
        if len(page) > limit:
            return page[:limit], encode_cursor(page[limit - 1])
        return page, None

    def count(self, queue: str, outcome: Ended) -> int:
        check_page(outcome, 1)
        where = self._list(queue, outcome) & (self._table.c.finished_at > self._cutoff())
        query = select(func.count()).select_from(self._table).where(where)
        found = self._db.run(
            lambda conn: conn.execute(query).scalar_one(), what="counting recent jobs", atomic=False
        )
        return int(found)

    def queues(self) -> list[str]:
        c = self._table.c
        query = select(c.queue).where(c.finished_at > self._cutoff()).distinct()
        names = self._db.run(
            lambda conn: list(conn.execute(query).scalars()),
            what="listing queues of recent jobs",
            atomic=False,
        )
        return sorted(names)

    def prune(self, *, chunk_size: int = _SWEEP_CHUNK) -> int:
        """Delete every row past its age now, ``chunk_size`` per transaction; returns how many."""
        return self._delete_aged(self._clock.time(), chunk_size)

    def close(self) -> None:
        """Dispose of the engine if this store created it (a borrowed one stays)."""
        self._db.close()

    def _list(self, queue: str, outcome: str) -> ColumnElement[bool]:
        c = self._table.c
        return (c.queue == queue) & (c.outcome == outcome)

    def _trim(self, conn: Connection, queue: str, outcome: str, cutoff: float) -> None:
        """Delete the list's rows past their age, then those below its ``keep_max`` newest."""
        c, in_list = self._table.c, self._list(queue, outcome)
        conn.execute(delete(self._table).where(in_list & (c.finished_at <= cutoff)))
        newest_first = (c.finished_at.desc(), c.job_id.desc())
        first_over = select(c.finished_at, c.job_id).where(in_list).order_by(*newest_first)
        edge = conn.execute(first_over.offset(self._keep_max).limit(1)).first()
        if edge is not None:
            at, job_id = edge
            below = or_(c.finished_at < at, and_(c.finished_at == at, c.job_id <= job_id))
            conn.execute(delete(self._table).where(in_list & below))

    def _maybe_sweep(self, now: float) -> None:
        """Sweep rows past their age from every list, at most once every ``SWEEP_EVERY_S``."""
        with self._sweep_lock:
            if now < self._next_sweep_at:
                return
            self._next_sweep_at = now + SWEEP_EVERY_S
        self._delete_aged(now, _SWEEP_CHUNK)

    def _delete_aged(self, now: float, chunk_size: int) -> int:
        aged = self._table.c.finished_at <= now - self._keep_s
        return delete_in_chunks(
            self._db, self._table, aged, chunk_size=chunk_size, what="deleting aged recent jobs"
        )


def _upsert(dialect: str, table: Table) -> Insert:
    """An insert that replaces the row of a job already in the list."""
    if dialect in MYSQL:
        on_mysql = mysql.insert(table)
        return on_mysql.on_duplicate_key_update([(n, on_mysql.inserted[n]) for n in _COLUMNS])
    on_conflict = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
    return on_conflict.on_conflict_do_update(
        index_elements=[table.c.queue, table.c.outcome, table.c.job_id],
        set_={n: on_conflict.excluded[n] for n in _COLUMNS},
    )


def _row(job: RecentJob) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "outcome": job.outcome,
        "job_id": job.job_id,
        "job_type": job.job_type,
        "finished_at": float(job.finished_at),
        "attempts": int(job.attempts),
        "duration_s": job.duration_s,
        "tags": json.dumps(list(job.tags), ensure_ascii=False),
        "error": job.error,
    }


def _record(row: Row[Any]) -> RecentJob:
    data = row._mapping
    return RecentJob(
        job_id=data["job_id"],
        queue=data["queue"],
        outcome=cast(Ended, data["outcome"]),
        job_type=data["job_type"],
        finished_at=float(data["finished_at"]),
        attempts=int(data["attempts"]),
        duration_s=None if data["duration_s"] is None else float(data["duration_s"]),
        tags=tuple(json.loads(data["tags"] or "[]")),
        error=data["error"] or "",
    )
