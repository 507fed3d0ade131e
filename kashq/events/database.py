"""The event store in the ``job_events`` table (SQLite, PostgreSQL, MySQL/MariaDB).

A batch is written in one transaction: one ``COPY`` on PostgreSQL with psycopg,
else one ``executemany`` INSERT (a multi-row INSERT on MySQL). Positions are the
table's ids. Live reads poll by id; since concurrent writers may commit their
ids out of order, a follower that sees a hole in the ids waits up to
``GAP_WAIT_S`` for it to fill before moving past it (a rolled-back insert leaves
a hole for good). Pruning deletes by ``at`` in short chunks. Database failures are one-line
:class:`~kashq.events.base.EventStoreError` (a ``DriverError``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import URL, Engine, Row, func, select

from kashq.db.bulk import insert_rows
from kashq.db.engine import Database, delete_in_chunks
from kashq.events.base import (
    DEFAULT_POLL_S,
    DEFAULT_READ_LIMIT,
    Event,
    EventStoreError,
    Subscribing,
    dumps_details,
    history_order,
    stopped,
)

GAP_WAIT_S = 2.0
MAX_EVENT_ID = 2**63 - 1  # job_events.id: BIGINT, or SQLite's 64-bit INTEGER


class DatabaseEventStore(Subscribing):
    """Events as rows of ``job_events`` (``<table_prefix>job_events``)."""

    def __init__(
        self, engine_or_url: Engine | str | URL, *, table_prefix: str | None = None
    ) -> None:
        self._db = Database(engine_or_url, error=EventStoreError, table_prefix=table_prefix)
        self._table = self._db.tables.job_events

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def append(self, event: Event) -> None:
        self.append_many((event,))

    def append_many(self, events: Sequence[Event]) -> None:
        if not events:
            return
        rows = [_values(event) for event in events]
        self._db.run(lambda conn: insert_rows(conn, self._table, rows), what="recording events")

    def get_job_events(self, job_id: str) -> list[Event]:
        c = self._table.c
        query = select(self._table).where(c.job_id == job_id).order_by(c.id)
        return history_order(self._select(query, "reading a job's events"), int)

    def read(self, after: str | None = None, limit: int = DEFAULT_READ_LIMIT) -> list[Event]:
        c = self._table.c
        query = select(self._table).order_by(c.id).limit(limit)
        if after is not None:
            query = query.where(c.id > _id(after))
        return self._select(query, "reading events")

    def tail(
        self,
        after: str | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield events as rows appear (after ``after``, or from now on), polling by id."""
        gaps = _Cursor(_id(after) if after is not None else self._last_id())
        while not stopped(stop):
            c = self._table.c
            query = select(self._table).where(c.id > gaps.cursor).order_by(c.id)
            fresh = gaps.take(self._select(query.limit(DEFAULT_READ_LIMIT), "following events"))
            yield from fresh
            if not fresh:
                if stop is None:
                    time.sleep(poll_s)
                else:
                    stop.wait(poll_s)

    def prune(self, older_than_s: float, *, chunk_size: int = 1000) -> int:
        cutoff = time.time() - older_than_s
        return delete_in_chunks(
            self._db,
            self._table,
            self._table.c.at < cutoff,
            chunk_size=chunk_size,
            what="pruning events",
        )

    def close(self) -> None:
        """Dispose of the engine if this store created it (a borrowed one stays)."""
        self._db.close()

    def _last_id(self) -> int:
        rows = self._db.run(
            lambda conn: conn.execute(select(func.max(self._table.c.id))).scalar(),
            what="reading the last event",
            atomic=False,
        )
        return int(rows or 0)

    def _select(self, query: Any, what: str) -> list[Event]:
        rows = self._db.run(lambda conn: list(conn.execute(query).all()), what=what, atomic=False)
        return [_event(row) for row in rows]


class _Cursor:
    """Where a follower is: every id up to ``cursor`` seen, plus those seen beyond a hole."""

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self._ahead: set[int] = set()
        self._hole_since: float | None = None

    def take(self, events: list[Event]) -> list[Event]:
        """The events not yet seen, moving the cursor over every hole-free run of ids."""
        fresh = [e for e in events if int(e.position or 0) not in self._ahead]
        self._ahead.update(int(e.position or 0) for e in fresh)
        while self.cursor + 1 in self._ahead:
            self.cursor += 1
            self._ahead.discard(self.cursor)
        if not self._ahead:
            self._hole_since = None
        elif self._hole_since is None:
            self._hole_since = time.monotonic()
        elif time.monotonic() - self._hole_since > GAP_WAIT_S:
            # The hole never filled (a rolled-back insert): step over it.
            self.cursor = min(self._ahead) - 1
            self._hole_since = None
            return fresh + self.take([])
        return fresh


def _id(position: str) -> int:
    """The event id a position names; a bad one is an :class:`EventStoreError` line.

    Positions are event ids, whole numbers from 0 (before the first event). One
    beyond any id a column can hold is after every event, not an overflow.
    """
    text = position.strip()
    if not (text.isascii() and text.isdigit()):
        raise EventStoreError(
            f"not a database event position: {position!r} (positions are event ids: 0, 1, 2 ...)"
        )
    digits = text.lstrip("0") or "0"  # (int() refuses thousands of digits)
    return MAX_EVENT_ID if len(digits) > 19 else min(int(digits), MAX_EVENT_ID)


def _values(event: Event) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "type": event.type,
        "job_type": event.job_type,
        "queue": event.queue,
        "attempt": event.attempt,
        "at": event.at,
        "host": event.host,
        "pid": event.pid,
        "details": dumps_details(event.details),
    }


def _event(row: Row[Any]) -> Event:
    data = row._mapping
    try:
        details = json.loads(data["details"]) if data["details"] else {}
    except ValueError:
        details = {"raw": data["details"]}
    return Event(
        type=data["type"],
        job_id=data["job_id"],
        job_type=data["job_type"],
        queue=data["queue"],
        attempt=int(data["attempt"]),
        at=float(data["at"]),
        host=data["host"],
        pid=int(data["pid"]),
        details=details if isinstance(details, dict) else {"value": details},
        position=str(data["id"]),
    )
