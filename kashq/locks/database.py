"""Locks and counters in kashq's SQL tables (SQLite, PostgreSQL, MariaDB/MySQL).

``kashq_locks`` holds one row per held lock (name, token, expires_at). Taking
a lock is one dialect upsert that replaces the row only if it has expired,
followed, in the same transaction, by reading whose token is there: the
database's row lock makes the two atomic against every other process.
Release and extend are ``DELETE`` / ``UPDATE ... WHERE name AND token`` and
ignore a row that has expired. ``kashq_counters`` keeps one row per counter,
reset by the upsert when its window has ended.

Times come from ``clock`` (the caller's host), so hosts sharing a database
need synchronised clocks (NTP), as with the database driver.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, Table, case, delete, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.dml import Insert

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database
from kashq.db.schema import MYSQL
from kashq.exceptions import DriverError
from kashq.locks.held import HeldLock, acquire_waiting, check_ttl, new_token

T = TypeVar("T")
NAME_MAX = 191  # the width of the name columns
_SWEEP_EVERY = 500  # operations between deletions of expired rows
_HIT_TRIES = 5
# Lock waits and deadlocks between transactions racing for one row: PostgreSQL
# SQLSTATEs, MySQL/MariaDB error numbers.
_CONTENTION_STATES = {"40P01", "40001", "55P03"}
_CONTENTION_CODES = {1205, 1213}


class _Contended(Exception):
    """Another transaction raced for the same row and this one was rolled back."""


def row_name(key: str) -> str:
    """``key`` as stored: itself, or, if too long for the column, a readable head and a hash."""
    if len(key) <= NAME_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: NAME_MAX - len(digest) - 1]}#{digest}"


class DatabaseLocks:
    """A :class:`~kashq.locks.base.LockBackend` on the ``kashq_locks``/``kashq_counters`` tables.

    ``url_or_engine`` is a SQLAlchemy URL or an engine (shared with a database
    driver; then :meth:`close` leaves it open). A SQLite file is migrated on
    first use; a server database must be migrated (``kashq migrate``).
    """

    def __init__(
        self,
        url_or_engine: Engine | str | URL,
        *,
        clock: Clock = SYSTEM_CLOCK,
        table_prefix: str | None = None,
    ) -> None:
        self._db = Database(url_or_engine, error=DriverError, table_prefix=table_prefix)
        self._locks, self._counters = self._db.tables.locks, self._db.tables.counters
        self._clock = clock
        self._ops = itertools.count(1)

    def acquire(self, key: str, ttl_s: float, *, wait_s: float = 0.0) -> HeldLock:
        """Take ``key`` for ``ttl_s`` seconds, waiting up to ``wait_s``; else LockNotAcquired."""
        check_ttl(ttl_s)
        return acquire_waiting(lambda: self.try_acquire(key, ttl_s), key, wait_s)

    def try_acquire(self, key: str, ttl_s: float) -> HeldLock | None:
        """Take ``key`` now if it is free (or its holder's TTL ran out); None if it is held."""
        check_ttl(ttl_s)
        token, name, now = new_token(), row_name(key), self._clock.time()
        upsert = _take_if_expired(
            self._db.dialect, self._locks, name, token, expires_at=now + ttl_s, now=now
        )
        c = self._locks.c

        def take(conn: Connection) -> bool:
            conn.execute(upsert)
            held_by = conn.execute(select(c.token).where(c.name == name)).scalar()
            return held_by == token

        try:
            taken = self._run(take, "acquiring a lock")
        except _Contended:
            return None  # a racing transaction was taking it: that one wins
        self._maybe_sweep(now)
        return HeldLock(self, key, token) if taken else None

    def hit(self, key: str, window_s: float) -> int:
        """Count one event for ``key`` in the current fixed window; returns the count."""
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        name, now = row_name(key), self._clock.time()
        window_end = (math.floor(now / window_s) + 1) * window_s
        upsert = _count(self._db.dialect, self._counters, name, window_end, now)
        c = self._counters.c

        def count(conn: Connection) -> int:
            conn.execute(upsert)
            return int(conn.execute(select(c.value).where(c.name == name)).scalar_one())

        for attempt in range(1, _HIT_TRIES + 1):
            try:
                value = self._run(count, "counting a hit")
            except _Contended:
                if attempt == _HIT_TRIES:
                    raise DriverError(f"counting a hit on {key!r} kept deadlocking") from None
                continue
            self._maybe_sweep(now)
            return value
        raise AssertionError("unreachable")  # pragma: no cover

    def release_token(self, key: str, token: str) -> bool:
        """Delete ``key`` if it is held under ``token``; True only if it had not expired."""
        locks, c = self._locks, self._locks.c
        mine = (c.name == row_name(key)) & (c.token == token)
        now = self._clock.time()

        def free(conn: Connection) -> bool:
            if conn.execute(delete(locks).where(mine & (c.expires_at > now))).rowcount == 1:
                return True
            conn.execute(delete(locks).where(mine))  # our own expired row: tidy it away
            return False

        return self._db.run(free, what="releasing a lock", atomic=False)

    def extend_token(self, key: str, token: str, ttl_s: float) -> bool:
        """Make ``key`` last ``ttl_s`` from now if it is held, unexpired, under ``token``."""
        now, c = self._clock.time(), self._locks.c
        statement = (
            update(self._locks)
            .where((c.name == row_name(key)) & (c.token == token) & (c.expires_at > now))
            .values(expires_at=now + ttl_s)
        )
        result = self._db.run(
            lambda conn: conn.execute(statement), what="extending a lock", atomic=False
        )
        return bool(result.rowcount == 1)

    def close(self) -> None:
        """Dispose of the engine, if this object created it from a URL."""
        self._db.close()

    def _run(self, work: Callable[[Connection], T], what: str) -> T:
        """Run ``work`` in one transaction; a lost race raises :class:`_Contended`."""

        def guarded(conn: Connection) -> T:
            try:
                return work(conn)
            except IntegrityError:
                raise _Contended from None  # two first-time inserts of one name
            except DBAPIError as exc:
                if _is_contention(exc):
                    raise _Contended from None
                raise

        return self._db.run(guarded, what=what)

    def _maybe_sweep(self, now: float) -> None:
        """Now and then delete expired rows, so keys used once do not pile up."""
        if next(self._ops) % _SWEEP_EVERY:
            return

        locks, counters = self._locks, self._counters

        def sweep(conn: Connection) -> None:
            conn.execute(delete(locks).where(locks.c.expires_at <= now))
            conn.execute(delete(counters).where(counters.c.expires_at <= now))

        self._db.run(sweep, what="deleting expired locks and counters", atomic=False)


def _is_contention(exc: DBAPIError) -> bool:
    orig: Any = exc.orig
    if getattr(orig, "sqlstate", None) in _CONTENTION_STATES:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _CONTENTION_CODES


def _take_if_expired(
    dialect: str, locks: Table, name: str, token: str, *, expires_at: float, now: float
) -> Insert:
    """Insert the lock row, or overwrite an existing one only if it has expired."""
    row = {"name": name, "token": token, "expires_at": expires_at}
    c = locks.c
    if dialect in MYSQL:
        on_mysql = mysql.insert(locks).values(row)
        expired = c.expires_at <= now
        # MySQL applies these in order, each seeing the ones before: token first,
        # while expires_at still holds the old value the test reads.
        return on_mysql.on_duplicate_key_update(
            [
                ("token", case((expired, on_mysql.inserted.token), else_=c.token)),
                ("expires_at", case((expired, on_mysql.inserted.expires_at), else_=c.expires_at)),
            ]
        )
    on_conflict = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(locks).values(row)
    return on_conflict.on_conflict_do_update(
        index_elements=[c.name],
        set_={"token": on_conflict.excluded.token, "expires_at": on_conflict.excluded.expires_at},
        where=c.expires_at <= now,
    )


def _count(dialect: str, counters: Table, name: str, window_end: float, now: float) -> Insert:
    """Insert the counter at 1, or add one to it; a counter whose window ended restarts at 1."""
    row = {"name": name, "value": 1, "expires_at": window_end}
    c = counters.c
    expired = c.expires_at <= now
    if dialect in MYSQL:
        on_mysql = mysql.insert(counters).values(row)
        # value first: its test must read the old expires_at (see _take_if_expired).
        return on_mysql.on_duplicate_key_update(
            [
                ("value", case((expired, 1), else_=c.value + 1)),
                ("expires_at", case((expired, on_mysql.inserted.expires_at), else_=c.expires_at)),
            ]
        )
    on_conflict = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(counters).values(
        row
    )
    return on_conflict.on_conflict_do_update(
        index_elements=[c.name],
        set_={
            "value": case((expired, 1), else_=c.value + 1),
            "expires_at": case((expired, on_conflict.excluded.expires_at), else_=c.expires_at),
        },
    )
