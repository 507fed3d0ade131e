"""The result store in the ``job_results`` table (SQLite, PostgreSQL, MySQL/MariaDB).

One row per job. :meth:`~DatabaseResultStore.put` is a dialect upsert of the
outcome columns, :meth:`~DatabaseResultStore.put_progress` one of the progress
columns (a batch in one transaction), so neither ever overwrites the other's.
A row past its ``expires_at`` (Unix seconds on the store's clock) is never
read, is replaced as if absent, and is deleted: by :meth:`prune`, and by a
sweep that writes run, one chunk at a time, at most once a minute
(``SWEEP_EVERY_S``) unless a backlog remains.

Waiting: on PostgreSQL with psycopg, ``put`` also sends ``pg_notify`` in its
transaction and the waiter LISTENs on a connection of its own (not one of
the pool's, which it would hold for the whole wait), re-reading the row after
each notification for its job and at least every ``LISTEN_SLICE_S``, so a
missed notification or a reconnect costs a second, never the wait. Other
databases are polled, from 20 ms up to 500 ms apart. Database failures are
one-line :class:`~kashq.results.base.ResultStoreError` (a ``DriverError``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, cast

from sqlalchemy import URL, Connection, Engine, Row, Table, case, delete, func, or_, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database, listening_connection
from kashq.db.schema import MYSQL
from kashq.results.base import Outcome, Progress, ResultStoreError, StoredResult

SWEEP_EVERY_S = 60.0
LISTEN_SLICE_S = 1.0
CHANNEL = "kashq_results"
"""The PostgreSQL notification channel, after the table prefix; the payload is the job id."""
_SWEEP_CHUNK = 1000  # rows deleted per transaction
_IDS_CHUNK = 500  # ids per IN (...) list
_FIRST_POLL_S = 0.02
_LONGEST_POLL_S = 0.5
_OUTCOME = ("status", "job_type", "queue", "value", "error", "reason", "attempts", "finished_at")

Pause = Callable[[float], None]


class DatabaseResultStore:
    """Job results as rows of ``job_results`` (``<table_prefix>job_results``)."""

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        clock: Clock = SYSTEM_CLOCK,
        table_prefix: str | None = None,
    ) -> None:
        self._db = Database(engine_or_url, error=ResultStoreError, table_prefix=table_prefix)
        self._table = self._db.tables.job_results
        self._clock = clock
        self._put = _put_outcome(self._db.dialect, self._table)
        self._put_progress = _put_progress(self._db.dialect, self._table)
        self._notifies = self._db.dialect == "postgresql"
        self._channel = self._db.tables.prefix + CHANNEL
        self._sweep_lock = threading.Lock()
        self._next_sweep_at = -math.inf

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def put(self, result: StoredResult, ttl_s: float) -> None:
        if result.status is None:
            raise ValueError("put stores an outcome: result.status must be set")
        now = self._clock.time()
        row = {name: getattr(result, name) for name in _OUTCOME}
        row.update(job_id=result.job_id, expires_at=now + ttl_s)
        c = self._table.c

        def write(conn: Connection) -> None:
            # An expired row is gone, progress and all: the new outcome starts afresh.
            conn.execute(
                delete(self._table).where((c.job_id == result.job_id) & (c.expires_at <= now))
            )
            conn.execute(self._put, row)
            if self._notifies:  # delivered when this transaction commits
                conn.execute(select(func.pg_notify(self._channel, result.job_id)))

        self._db.run(write, what="storing a result")
        self._maybe_sweep(now)

    def put_progress(self, updates: Sequence[Progress], ttl_s: float) -> None:
        if not updates:
            return
        now = self._clock.time()
        latest: dict[str, Progress] = {}
        for update in updates:  # one row per job: the newest of the batch
            kept = latest.get(update.job_id)
            if kept is None or update.at >= kept.at:
                latest[update.job_id] = update
        rows = [
            {
                "job_id": u.job_id,
                "progress": u.fraction,
                "message": u.message,
                "progress_at": u.at,
                "expires_at": now + ttl_s,
            }
            for u in sorted(latest.values(), key=lambda u: u.job_id)  # one lock order for all
        ]
        c, ids = self._table.c, sorted(latest)

        def write(conn: Connection) -> None:
            for start in range(0, len(ids), _IDS_CHUNK):
                chunk = ids[start : start + _IDS_CHUNK]
                conn.execute(delete(self._table).where(c.job_id.in_(chunk) & (c.expires_at <= now)))
            conn.execute(self._put_progress, rows)

        self._db.run(write, what="storing progress")
        self._maybe_sweep(now)  # jobs that only report progress must not pile up either

    def get(self, job_id: str) -> StoredResult | None:
        c = self._table.c
        query = select(self._table).where(
            (c.job_id == job_id) & (c.expires_at > self._clock.time())
        )
        row = self._db.run(
            lambda conn: conn.execute(query).first(), what="reading a result", atomic=False
        )
        return None if row is None else _record(row)

    def wait(self, job_id: str, timeout_s: float) -> StoredResult | None:
        """Wait for ``job_id``'s outcome: LISTEN on PostgreSQL (psycopg), polling elsewhere.

        The first read fails at once, as any call; after it, a database that
        cannot be read is tried again until the deadline. If the last try before
        the deadline failed, :class:`ResultStoreError`: unlike None, it does not
        claim the job has no outcome.
        """
        deadline = time.monotonic() + timeout_s
        found = _outcome(self.get(job_id))
        if found is not None or timeout_s <= 0:
            return found
        listening = self._notifies and self._db.engine.dialect.driver == "psycopg"
        with _listener(self._db.engine, self._channel, job_id) if listening else _poller() as pause:
            return self._wait_for(job_id, deadline, pause)

    def prune(self, *, chunk_size: int = _SWEEP_CHUNK) -> int:
        """Delete every expired row now, ``chunk_size`` per transaction; returns how many."""
        return self._delete_expired(self._clock.time(), chunk_size)

    def close(self) -> None:
        """Dispose of the engine if this store created it (a borrowed one stays)."""
        self._db.close()

    def _wait_for(self, job_id: str, deadline: float, pause: Pause) -> StoredResult | None:
        """Read the row, then ``pause``, until it holds an outcome or the deadline passes."""
        lost: ResultStoreError | None = None
        while True:
            try:
                found = _outcome(self.get(job_id))
                lost = None
                if found is not None:
                    return found
            except ResultStoreError as exc:
                lost = exc  # tried again after the pause
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                if lost is not None:
                    raise lost
                return None
            pause(left_s)

    def _maybe_sweep(self, now: float) -> None:
        """Delete one chunk of expired rows, at most once every ``SWEEP_EVERY_S`` of the
        clock while few expire; at every write while a backlog lasts. One chunk per
        write keeps a worker's write (before its job's ack) short whatever the backlog."""
        with self._sweep_lock:
            if now < self._next_sweep_at:
                return
            self._next_sweep_at = now + SWEEP_EVERY_S
        if self._delete_expired(now, _SWEEP_CHUNK, chunks=1) >= _SWEEP_CHUNK:
            with self._sweep_lock:
                self._next_sweep_at = now  # more are waiting: the next write goes on

    def _delete_expired(self, now: float, chunk_size: int, chunks: float = math.inf) -> int:
        """Delete rows expired at ``now``, ``chunk_size`` per short transaction (never a long
        lock), at most ``chunks`` of them."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        c = self._table.c
        expired = c.expires_at <= now
        ids_of_chunk = select(c.job_id).where(expired).order_by(c.expires_at).limit(chunk_size)

        def delete_chunk(conn: Connection) -> tuple[int, int]:
            ids = list(conn.execute(ids_of_chunk).scalars())
            if not ids:
                return 0, 0
            # Expiry checked again: a row put anew since the select stays.
            gone = conn.execute(delete(self._table).where(c.job_id.in_(ids) & expired)).rowcount
            return len(ids), int(gone)

        removed, done = 0, 0
        while True:
            seen, gone = self._db.run(delete_chunk, what="deleting expired results")
            removed, done = removed + gone, done + 1
            if seen < chunk_size or done >= chunks:
                return removed


@contextmanager
def _poller() -> Iterator[Pause]:
    """Pauses growing from ``_FIRST_POLL_S`` to ``_LONGEST_POLL_S``."""
    pause_s = _FIRST_POLL_S

    def pause(left_s: float) -> None:
        nonlocal pause_s
        time.sleep(min(pause_s, left_s))
        pause_s = min(pause_s * 1.5, _LONGEST_POLL_S)

    yield pause


@contextmanager
def _listener(engine: Engine, channel: str, job_id: str) -> Iterator[Pause]:
    """Pauses that end at a notification for ``job_id`` on ``channel``, or after a slice.

    The LISTEN connection is made from the engine's URL outside its pool,
    autocommit, and made again after it is lost; it is closed when the wait ends.
    """
    dialect = engine.dialect
    dbapi_error = cast(type[Exception], dialect.loaded_dbapi.Error)
    held: list[Any] = []

    def drop() -> None:
        while held:
            with suppress(dbapi_error, OSError):  # already broken: nothing more to release
                held.pop().close()

    def pause(left_s: float) -> None:
        slice_end = time.monotonic() + min(left_s, LISTEN_SLICE_S)
        try:
            if not held:
                held.append(listening_connection(engine, channel))
            for note in held[0].notifies(timeout=max(slice_end - time.monotonic(), 0)):
                if note.payload == job_id:
                    return
        except (dbapi_error, OSError):
            drop()  # connected again at the next pause; the row is read meanwhile
            time.sleep(max(slice_end - time.monotonic(), 0))

    try:
        # Listening before the first read, so no notification is missed; if this
        # fails, the pauses connect (or wait out their slices).
        with suppress(dbapi_error, OSError):
            held.append(listening_connection(engine, channel))
        yield pause
    finally:
        drop()


def _put_outcome(dialect: str, table: Table) -> Insert:
    """An upsert of the outcome columns (and expiry), leaving the progress columns as they are."""
    names = (*_OUTCOME, "expires_at")
    if dialect in MYSQL:
        on_mysql = mysql.insert(table)
        return on_mysql.on_duplicate_key_update([(n, on_mysql.inserted[n]) for n in names])
    on_conflict = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
    return on_conflict.on_conflict_do_update(
        index_elements=[table.c.job_id], set_={n: on_conflict.excluded[n] for n in names}
    )


def _put_progress(dialect: str, table: Table) -> Insert:
    """An upsert of the progress columns, unless a newer report is stored.

    Never touches the outcome columns; the expiry only moves later, and not
    at all once an outcome is stored (it keeps its own time-to-live).
    """
    c = table.c
    if dialect in MYSQL:
        on_mysql = mysql.insert(table)
        new = on_mysql.inserted
        newer = or_(c.progress_at.is_(None), c.progress_at <= new.progress_at)
        later = newer & c.status.is_(None) & (new.expires_at > c.expires_at)
        # MySQL applies these in order, each seeing the ones before: progress_at
        # last, so every test reads the stored report's time.
        return on_mysql.on_duplicate_key_update(
            [
                ("progress", case((newer, new.progress), else_=c.progress)),
                ("message", case((newer, new.message), else_=c.message)),
                ("expires_at", case((later, new.expires_at), else_=c.expires_at)),
                ("progress_at", case((newer, new.progress_at), else_=c.progress_at)),
            ]
        )
    on_conflict = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
    new = on_conflict.excluded
    return on_conflict.on_conflict_do_update(
        index_elements=[c.job_id],
        set_={
            "progress": new.progress,
            "message": new.message,
            "progress_at": new.progress_at,
            "expires_at": case(
                (c.status.is_(None) & (new.expires_at > c.expires_at), new.expires_at),
                else_=c.expires_at,
            ),
        },
        where=or_(c.progress_at.is_(None), c.progress_at <= new.progress_at),
    )


def _record(row: Row[Any]) -> StoredResult:
    data = row._mapping
    return StoredResult(
        job_id=data["job_id"],
        status=cast(Outcome | None, data["status"]),
        job_type=data["job_type"],
        queue=data["queue"],
        value=data["value"],
        error=data["error"] or "",
        reason=data["reason"],
        attempts=int(data["attempts"]),
        finished_at=_float(data["finished_at"]),
        progress=_float(data["progress"]),
        message=data["message"] or "",
        progress_at=_float(data["progress_at"]),
        expires_at=float(data["expires_at"]),
    )


def _outcome(found: StoredResult | None) -> StoredResult | None:
    """``found`` if it holds an outcome (a progress-only record does not end a wait)."""
    return found if found is not None and found.status is not None else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
