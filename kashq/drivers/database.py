"""The database driver: the ``kashq_jobs`` table on SQLite, PostgreSQL or MySQL/MariaDB.

The embedded default: a SQLite file that creates itself on first use and is
shared safely by several worker processes and dispatchers. On PostgreSQL and
MySQL/MariaDB, reservations use ``FOR UPDATE SKIP LOCKED`` so workers never
wait on each other's rows.

One row per job (see :mod:`kashq.db.schema`). ``available_at`` is when a
waiting job may run or when a reserved job's lease ends, so a job whose worker
vanished is simply eligible again once its lease lapses; ``token`` names the
current holder, and ack/release/extend only act for that holder. Reserving
is one statement on PostgreSQL and SQLite (``UPDATE ... RETURNING``) and a
``SELECT ... FOR UPDATE SKIP LOCKED`` plus ``UPDATE`` on MySQL; a finished job
passed as ``ack=`` is deleted in that same statement (PostgreSQL) or
transaction. There is no wake-up signal, so a waiting ``reserve`` polls every
``poll_interval_s``. Times are the clock's (the worker host's), so the hosts
of one queue need synchronised clocks (NTP), as with Laravel's database queue.

Differences from the memory driver, neither visible to the contract: a job
whose lease lapsed keeps its place (it is not moved behind its equals), and a
released job goes behind its equals as in Laravel (it is re-inserted).

Control records live in ``kashq_control``, written with the dialect's upsert;
an expired record is skipped by readers, and the reader that first sees one
deletes every expired record (so the table stays small without a janitor).
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database
from kashq.db.schema import MYSQL, control, jobs
from kashq.drivers.base import Cleared, QueueSizes, Reservation, check_control_name
from kashq.envelope import UNIQUE_KEY, Envelope, unique_claim
from kashq.exceptions import DriverError

_DELETE_CHUNK = 500
_c = jobs.c

_INSERT = insert(jobs)
_ELIGIBLE = (
    (_c.queue == bindparam("p_queue"))
    & (_c.available_at <= bindparam("p_now"))
    # The job being acked in the same statement is never handed out again.
    & (_c.id != bindparam("p_acked"))
)
_PICK = select(_c.seq).where(_ELIGIBLE).order_by(_c.priority.desc(), _c.seq).limit(1)
_CLAIM_VALUES = {
    "token": bindparam("p_token"),
    "deliveries": _c.deliveries + 1,
    "available_at": bindparam("p_lease_until"),
}
# PostgreSQL and SQLite: one atomic statement picks and claims the job (SQLite
# ignores FOR UPDATE; its writes are serialised anyway).
_CLAIM = (
    update(jobs)
    .where(_c.seq == _PICK.with_for_update(skip_locked=True).scalar_subquery())
    .values(_CLAIM_VALUES)
    .returning(_c.id, _c.raw, _c.deliveries)
)
# MySQL/MariaDB have no UPDATE ... RETURNING: lock the row, then claim it.
_PICK_LOCKED = (
    select(_c.seq, _c.id, _c.raw, _c.deliveries)
    .where(_ELIGIBLE)
    .order_by(_c.priority.desc(), _c.seq)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_CLAIM_SEQ = update(jobs).where(_c.seq == bindparam("p_seq")).values(_CLAIM_VALUES)
_OWNED = (_c.id == bindparam("p_id")) & (_c.token == bindparam("p_token"))
_ACK = delete(jobs).where(_OWNED)
# PostgreSQL: ack the previous job and claim the next in one statement (one
# round trip); a data-modifying CTE runs whether or not it is referenced.
_ACK_AND_CLAIM = _CLAIM.add_cte(
    delete(jobs)
    .where((_c.id == bindparam("p_acked")) & (_c.token == bindparam("p_acked_token")))
    .cte("acked")
)
_EXTEND = update(jobs).where(_OWNED).values(available_at=bindparam("p_lease_until"))
_IS_READY = _c.available_at <= bindparam("p_now")
_IS_WAITING = _c.token.is_(None) & (_c.available_at > bindparam("p_now"))
_IS_HELD = _c.token.is_not(None) & (_c.available_at > bindparam("p_now"))
_SIZES = (
    select(
        _c.queue,
        func.sum(case((_IS_READY, 1), else_=0)),
        func.sum(case((_IS_WAITING, 1), else_=0)),
        func.sum(case((_IS_HELD, 1), else_=0)),
    )
    .where(_c.queue.in_(bindparam("p_queues", expanding=True)))
    .group_by(_c.queue)
)
_CLEAR = delete(jobs).where(_c.queue == bindparam("p_queue"))
_CLAIMING = select(_c.raw).where(
    (_c.queue == bindparam("p_queue")) & _c.raw.contains(UNIQUE_KEY, autoescape=True)
)
_IN_IDS = _c.id.in_(bindparam("p_ids", expanding=True))
_HELD_IDS = select(_c.id).where(_IN_IDS & _c.token.is_not(None))
_DELETE_WAITING_IDS = delete(jobs).where(_IN_IDS & _c.token.is_(None))
# A reserve repeated after a lost reply finds the job its token already holds.
_BY_TOKEN = select(_c.id, _c.queue, _c.raw, _c.deliveries).where(_c.token == bindparam("p_token"))
_QUEUE_NAMES = select(_c.queue).distinct().order_by(_c.queue)

_k = control.c
_LIKE_ESCAPE = "/"
_IS_EXPIRED = _k.expires_at <= bindparam("p_now")
# Expired records of any name come along, so any reader can sweep them.
_CONTROL_READ = select(_k.name, _k.value, _k.expires_at).where(
    _k.name.like(bindparam("p_like"), escape=_LIKE_ESCAPE) | _IS_EXPIRED
)
_CONTROL_SWEEP = delete(control).where(_IS_EXPIRED)
_CONTROL_DELETE = delete(control).where(
    (_k.name == bindparam("p_name"))
    & (_k.expires_at.is_(None) | (_k.expires_at > bindparam("p_now")))
)


class _Duplicate(Exception):
    """A pushed id is already stored: replace it instead (the memory driver's rule)."""


class DatabaseDriver:
    """Queues in a SQL table; see the module docstring for how it works."""

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval_s: float = 0.05,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self._db = Database(engine_or_url, error=DriverError)
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._mysql = self._db.dialect in MYSQL
        self._control_upsert = _upsert(self._db.dialect)

    @property
    def engine(self) -> Engine:
        return self._db.engine

    # -- producing ------------------------------------------------------
    def push(self, envelope: Envelope) -> None:
        self.push_many((envelope,))

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        rows = [_row(env) for env in envelopes]

        def insert_all(conn: Connection) -> None:
            try:
                conn.execute(_INSERT, rows)
            except IntegrityError:
                raise _Duplicate() from None

        try:
            self._db.run(insert_all, what="push", atomic=len(rows) > 1)
        except _Duplicate:
            self._db.run(lambda conn: _replace(conn, rows), what="push")

    # -- consuming ------------------------------------------------------
    def reserve(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        ack: Reservation | None = None,
    ) -> Reservation | None:
        deadline = time.monotonic() + wait_s
        # One statement on PostgreSQL; SQLite and MySQL need a transaction
        # for the ack to go with the claim (and MySQL for any claim).
        atomic = self._mysql or (ack is not None and self._db.dialect == "sqlite")
        # One token for the whole call: if a statement is repeated (a dropped
        # connection retried by Database.run), the job it already took is found.
        token, calls = secrets.token_hex(16), [0]
        while True:
            found = self._db.run(
                functools.partial(
                    self._take, queues=queues, lease_s=lease_s, ack=ack, token=token, calls=calls
                ),
                what="reserve",
                atomic=atomic,
            )
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            ack, atomic = None, self._mysql  # acked already: just poll
            time.sleep(min(self._poll_interval_s, remaining))

    def ack(self, reservation: Reservation) -> None:
        params = {"p_id": reservation.id, "p_token": reservation.token}
        self._db.run(lambda conn: conn.execute(_ACK, params), what="ack", atomic=False)

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        row = _row(envelope)
        row["queue"] = reservation.queue
        params = {"p_id": reservation.id, "p_token": reservation.token}

        def reinsert(conn: Connection) -> None:
            # Re-inserting gives the job a new seq: it goes behind its equals.
            if conn.execute(_ACK, params).rowcount == 1:
                conn.execute(_INSERT, row)

        self._db.run(reinsert, what="release")

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        params = {
            "p_id": reservation.id,
            "p_token": reservation.token,
            "p_lease_until": self._clock.time() + lease_s,
        }
        result = self._db.run(
            lambda conn: conn.execute(_EXTEND, params), what="extend", atomic=False
        )
        return result.rowcount == 1

    # -- inspecting -----------------------------------------------------
    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        sizes = {name: QueueSizes() for name in queues}
        if not queues:
            return sizes
        params = {"p_queues": list(queues), "p_now": self._clock.time()}
        rows = self._db.run(
            lambda conn: conn.execute(_SIZES, params).all(), what="sizes", atomic=False
        )
        for name, ready, delayed, reserved in rows:
            sizes[name] = QueueSizes(int(ready or 0), int(delayed or 0), int(reserved or 0))
        return sizes

    def queue_names(self) -> list[str]:
        """Every queue that holds at least one job, by name."""
        names = self._db.run(
            lambda conn: conn.execute(_QUEUE_NAMES).scalars().all(),
            what="listing queues",
            atomic=False,
        )
        return list(names)

    def clear(self, queue: str) -> Cleared:
        def clear_queue(conn: Connection) -> Cleared:
            raws = conn.execute(_CLAIMING, {"p_queue": queue}).scalars()
            claims = tuple(filter(None, (unique_claim(raw) for raw in raws)))
            count = conn.execute(_CLEAR, {"p_queue": queue}).rowcount
            return Cleared(int(count), claims)

        return self._db.run(clear_queue, what="clear")

    # -- control records ------------------------------------------------
    def put_control(self, name: str, value: str, ttl_s: float | None = None) -> None:
        check_control_name(name)
        row = {
            "name": name,
            "value": value,
            "expires_at": None if ttl_s is None else self._clock.time() + ttl_s,
        }
        self._db.run(
            lambda conn: conn.execute(self._control_upsert, row),
            what="writing a control record",
            atomic=False,
        )

    def get_control(self, prefix: str = "") -> dict[str, str]:
        now = self._clock.time()
        params = {"p_like": _like_prefix(prefix), "p_now": now}
        rows = self._db.run(
            lambda conn: conn.execute(_CONTROL_READ, params).all(),
            what="reading control records",
            atomic=False,
        )
        records, expired = {}, False
        for name, value, expires_at in rows:
            if expires_at is not None and expires_at <= now:
                expired = True
            elif name.startswith(prefix):  # SQLite's LIKE ignores case
                records[name] = value
        if expired:
            self._db.run(
                lambda conn: conn.execute(_CONTROL_SWEEP, {"p_now": now}),
                what="deleting expired control records",
                atomic=False,
            )
        return dict(sorted(records.items()))

    def delete_control(self, name: str) -> bool:
        params = {"p_name": name, "p_now": self._clock.time()}
        result = self._db.run(
            lambda conn: conn.execute(_CONTROL_DELETE, params),
            what="deleting a control record",
            atomic=False,
        )
        return result.rowcount == 1

    def close(self) -> None:
        self._db.close()

    # -- internals ------------------------------------------------------
    def _take(
        self,
        conn: Connection,
        *,
        queues: Sequence[str],
        lease_s: float,
        ack: Reservation | None,
        token: str,
        calls: list[int],
    ) -> Reservation | None:
        now = self._clock.time()
        calls[0] += 1
        if calls[0] > 1:
            taken = conn.execute(_BY_TOKEN, {"p_token": token}).first()
            if taken is not None:
                return Reservation(taken.id, taken.queue, taken.raw, taken.deliveries, token)
        acked = {"p_acked": "", "p_acked_token": ""}
        if ack is not None:
            acked = {"p_acked": ack.id, "p_acked_token": ack.token}
            if self._db.dialect != "postgresql":
                conn.execute(_ACK, {"p_id": ack.id, "p_token": ack.token})
        for queue in queues:
            params: dict[str, Any] = {
                "p_queue": queue,
                "p_now": now,
                "p_token": token,
                "p_lease_until": now + lease_s,
                **acked,
            }
            if self._mysql:
                picked = conn.execute(_PICK_LOCKED, params).first()
                if picked is None:
                    continue
                conn.execute(_CLAIM_SEQ, {**params, "p_seq": picked.seq})
                return Reservation(picked.id, queue, picked.raw, picked.deliveries + 1, token)
            statement = _CLAIM
            if ack is not None and self._db.dialect == "postgresql":
                statement, ack = _ACK_AND_CLAIM, None  # the first statement acks
            claimed = conn.execute(statement, params).first()
            if claimed is not None:
                return Reservation(claimed.id, queue, claimed.raw, claimed.deliveries, token)
        if ack is not None and self._db.dialect == "postgresql":  # no queue given
            conn.execute(_ACK, {"p_id": ack.id, "p_token": ack.token})
        return None


def _row(envelope: Envelope) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "queue": envelope.queue,
        "raw": envelope.encode(),
        "priority": envelope.priority,
        "available_at": envelope.available_at,
        "token": None,
        "deliveries": 0,
    }


def _upsert(dialect: str) -> Insert:
    """An insert of a control record that replaces one of the same name, atomically."""
    if dialect in MYSQL:
        on_mysql = mysql.insert(control)
        return on_mysql.on_duplicate_key_update(
            value=on_mysql.inserted.value, expires_at=on_mysql.inserted.expires_at
        )
    if dialect == "sqlite":
        on_sqlite = sqlite.insert(control)
        return on_sqlite.on_conflict_do_update(
            index_elements=[_k.name],
            set_={"value": on_sqlite.excluded.value, "expires_at": on_sqlite.excluded.expires_at},
        )
    on_postgres = postgresql.insert(control)
    return on_postgres.on_conflict_do_update(
        index_elements=[_k.name],
        set_={"value": on_postgres.excluded.value, "expires_at": on_postgres.excluded.expires_at},
    )


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with ``prefix`` taken literally."""
    for special in (_LIKE_ESCAPE, "%", "_"):
        prefix = prefix.replace(special, _LIKE_ESCAPE + special)
    return prefix + "%"


def _replace(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, replacing waiting jobs with the same ids (the last copy wins).

    A job with the same id that a worker holds (it has a token) is left alone
    and its new copy dropped, so repeating a push is harmless.
    """
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest.pop(row["id"], None)
        latest[row["id"]] = row
    ids = list(latest)
    held: set[str] = set()
    for start in range(0, len(ids), _DELETE_CHUNK):
        chunk = {"p_ids": ids[start : start + _DELETE_CHUNK]}
        held.update(conn.execute(_HELD_IDS, chunk).scalars())
        conn.execute(_DELETE_WAITING_IDS, chunk)
    fresh = [row for job_id, row in latest.items() if job_id not in held]
    if fresh:
        conn.execute(_INSERT, fresh)
