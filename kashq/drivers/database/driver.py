"""The database driver: the ``kashq_jobs`` table on SQLite, PostgreSQL or MySQL/MariaDB.

The embedded default: a SQLite file that creates itself on first use and is
shared safely by several worker processes and dispatchers. On PostgreSQL and
MySQL/MariaDB, reservations use ``FOR UPDATE SKIP LOCKED`` so workers never
wait on each other's rows.

One row per job (see :mod:`kashq.db.schema`). ``available_at`` is when a
waiting job may run or when a reserved job's lease ends, so a job whose worker
vanished is simply eligible again once its lease lapses; ``token`` names the
current holder, and ack/release/extend only act for that holder (``remove``
deletes a job only while it has none, under the row's lock). A reserve claims
up to N jobs and acknowledges the finished ones in one transaction, one
statement on PostgreSQL (:mod:`.claims`); a waiting one sleeps until :mod:`.wakeup`
says a job may have come. Times are the clock's (the worker host's), so the hosts
of one queue need synchronised clocks (NTP), as with Laravel's database queue.

Differences from the memory driver, neither visible to the contract: a job
whose lease lapsed keeps its place (it is not moved behind its equals), and a
released job goes behind its equals as in Laravel (it is re-inserted).

Tags live in ``kashq_job_tags``, a row per tag of each tagged job, written in
the job's transaction and deleted with it (ack, remove, clear, the release that
re-inserts it); an untagged job pays nothing for them: whether a job has tags
is read from its envelope (``"tags"`` in its text) before any statement is
added. Listings and the oldest ready job are read by :mod:`.listing`.

``push_once`` remembers each id it stored in ``kashq_job_once``, inserted in the
job's own transaction: a second insert of a remembered id fails on its primary
key (a racing one waits for the first to commit, then fails), and nothing is
stored. Once a minute a driver deletes the ids whose memory lapsed.

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

from sqlalchemy import URL, Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database
from kashq.drivers.base import (
    ONCE_KEEP_S,
    Cleared,
    FoundJob,
    JobListing,
    JobState,
    QueueSizes,
    Reservation,
    Storage,
    check_control_name,
    is_job_id,
    reserve_one,
)
from kashq.drivers.database.claims import TAGGED, claims
from kashq.drivers.database.listing import listings
from kashq.drivers.database.rows import (
    DELETE_CHUNK,
    insert_in,
    job_row,
    notifications,
    replace,
    tag_row,
    tag_rows,
    tags,
)
from kashq.drivers.database.statements import (
    control_upsert,
    like_prefix,
    statements,
)
from kashq.drivers.database.wakeup import CHANNEL, NOTIFY, wakeups
from kashq.envelope import Envelope, unique_claim
from kashq.exceptions import DriverError
from kashq.transactions import Transaction

_ONCE_SWEEP_S = 60.0  # how often push_once deletes the ids it has forgotten


class _Duplicate(Exception):
    """A pushed id is already stored: replace it instead (the memory driver's rule), or
    (``push_once``) already remembered: store nothing."""


class DatabaseDriver:
    """Queues in a SQL table; see the module docstring for how it works."""

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval_s: float = 0.05,
        table_prefix: str | None = None,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        self._db = Database(engine_or_url, error=DriverError, table_prefix=table_prefix)
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._sql = statements(self._db.tables, self._db.dialect)
        self._listings = listings(self._db.tables, self._db.dialect)
        self._claims = claims(self._db.tables, self._db.dialect)
        channel = self._db.tables.prefix + CHANNEL
        self._wakeups = wakeups(self.engine, channel, poll_interval_s)
        self._notify_params = {"p_channel": channel}
        self._control_upsert = control_upsert(self._db.dialect, self._db.tables.control)
        self._once_swept_at = 0.0

    @property
    def engine(self) -> Engine:
        return self._db.engine

    @property
    def storage(self) -> Storage:
        return Storage("database", self.engine, clock=self._clock)

    # -- producing ------------------------------------------------------
    def push(self, envelope: Envelope) -> None:
        self.push_many((envelope,))

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        rows = [job_row(env) for env in envelopes]
        tagging = tag_rows(envelopes)

        # PostgreSQL: one job without tags is inserted and notified in one statement.
        alone = self._sql.insert_notify if len(rows) == 1 and not tagging else None

        def insert_all(conn: Connection) -> None:
            try:
                if alone is not None:
                    conn.execute(alone, {**rows[0], **self._notify_params})
                    return
                conn.execute(self._sql.insert, rows)
            except IntegrityError:
                raise _Duplicate() from None
            if tagging:
                conn.execute(self._sql.tag, tagging)
            self._notify(conn, envelopes)

        def replace_all(conn: Connection) -> None:
            replace(conn, self._sql, envelopes)
            self._notify(conn, envelopes)

        try:
            atomic = alone is None and len(rows) + len(tagging) > 1
            self._db.run(insert_all, what="push", atomic=atomic)
        except _Duplicate:
            self._db.run(replace_all, what="push")

    def push_in(self, transaction: Transaction, envelopes: Sequence[Envelope]) -> None:
        """Write ``envelopes`` in the caller's open ``transaction`` (``dispatch(using=...)``):
        workers see them once it commits (woken then on PostgreSQL), never if it rolls back."""
        dialect = self.engine.dialect
        transaction.check(dialect, f"the database connection ({self._db.url})")
        self._db.ensure_schema_beside()
        notify = self._notify_params if self._sql.insert_notify is not None else None
        try:
            insert_in(transaction, dialect, self._sql, envelopes, notify)
        except (SQLAlchemyError, dialect.loaded_dbapi.Error) as exc:
            raise self._db.error("push", exc) from exc

    def push_once(self, envelope: Envelope, keep_s: float = ONCE_KEEP_S) -> bool:
        now = self._clock.time()

        def remember_then_push(conn: Connection) -> bool:
            conn.execute(self._sql.once_forget, {"p_id": envelope.id, "p_now": now})
            try:
                conn.execute(self._sql.once_insert, {"id": envelope.id, "expires_at": now + keep_s})
            except IntegrityError:
                raise _Duplicate() from None  # remembered: nothing to store
            replace(conn, self._sql, (envelope,))
            self._notify(conn, (envelope,))
            return True

        try:
            pushed = self._db.run(remember_then_push, what="push")
        except _Duplicate:
            return False
        if now >= self._once_swept_at + _ONCE_SWEEP_S:  # forgotten ids go, once a minute
            self._once_swept_at = now
            self._db.run(lambda conn: conn.execute(self._sql.once_sweep, {"p_now": now}),
                         what="push", atomic=False)  # fmt: skip
        return pushed

    # -- consuming ------------------------------------------------------
    def reserve(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        ack: Reservation | None = None,
    ) -> Reservation | None:
        return reserve_one(self, queues, lease_s=lease_s, wait_s=wait_s, ack=ack)

    def reserve_batch(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        acks: Sequence[Reservation] = (),
        limit: int = 1,
    ) -> list[Reservation]:
        """Up to ``limit`` jobs of the first of ``queues`` that has any, ``acks`` acknowledged
        in the same transaction (one statement on PostgreSQL): see :mod:`.claims`."""
        deadline = time.monotonic() + wait_s
        # One statement on PostgreSQL; the others need a transaction.
        atomic = self._db.dialect != "postgresql"
        # One token for the whole call: if a statement is repeated (a dropped
        # connection retried by Database.run), the job it already took is found.
        token, calls = secrets.token_hex(16), [0]
        while True:
            mark = self._wakeups.mark(queues)
            found = self._db.run(
                functools.partial(
                    self._take, queues=queues, lease_s=lease_s, acks=acks, token=token,
                    limit=limit, calls=calls,
                ),
                what="reserve",
                atomic=atomic,
            )  # fmt: skip
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                if found:
                    self._wakeups.found()
                return found
            acks = ()  # acknowledged already: just wait
            if self._wakeups.exact:  # woken by changes only: wake up for the next delayed job
                now = self._clock.time()
                due = self._listings.next_due(self._db, queues, now)
                remaining = remaining if due is None else min(remaining, max(due - now, 0.0))
            self._wakeups.wait(mark, queues, remaining)

    def unreserve(self, reservations: Sequence[Reservation]) -> None:
        """Give prefetched jobs back unstarted: each keeps its place and its delivery is
        taken back; one no longer held (its lease lapsed) is left alone."""
        now = self._clock.time()

        def give_back(conn: Connection) -> None:
            for start in range(0, len(reservations), DELETE_CHUNK):
                chunk = reservations[start : start + DELETE_CHUNK]
                ids, held_by = [res.id for res in chunk], [res.token for res in chunk]
                conn.execute(
                    self._claims.unreserve, {"p_ids": ids, "p_tokens": held_by, "p_now": now}
                )
            self._notify(conn, reservations)

        if reservations:
            self._db.run(give_back, what="unreserve")

    def ack(self, reservation: Reservation) -> None:
        params = {"p_id": reservation.id, "p_token": reservation.token}
        if TAGGED not in reservation.raw:
            self._db.run(lambda conn: conn.execute(self._sql.ack, params), what="ack", atomic=False)
        elif self._db.dialect == "postgresql":  # one statement takes its tag rows along
            self._db.run(
                lambda conn: conn.execute(self._sql.ack_untag, params), what="ack", atomic=False
            )
        else:
            self._db.run(lambda conn: self._ack_tagged(conn, reservation), what="ack")

    def ack_many(self, reservations: Sequence[Reservation]) -> None:
        """Acknowledge several finished jobs: those without tags in one statement per 500
        (each holds a token of its own: see ``Statements.ack_ids``), the others one by one."""
        tagged = any(TAGGED in res.raw for res in reservations)  # two statements each
        self._db.run(lambda conn: self._ack_in(conn, reservations), what="ack", atomic=tagged)

    def _ack_in(self, conn: Connection, reservations: Sequence[Reservation]) -> None:
        plain = [res for res in reservations if TAGGED not in res.raw]
        for start in range(0, len(plain), DELETE_CHUNK):
            chunk = plain[start : start + DELETE_CHUNK]
            params = {"p_ids": [res.id for res in chunk], "p_tokens": [res.token for res in chunk]}
            conn.execute(self._sql.ack_ids, params)
        for res in reservations:
            if TAGGED in res.raw:
                self._ack_tagged(conn, res)

    def _ack_tagged(self, conn: Connection, reservation: Reservation) -> None:
        """Ack a job that has tags, and delete its tag rows if the ack removed it (SQLite,
        MySQL: in the caller's transaction)."""
        params = {"p_id": reservation.id, "p_token": reservation.token}
        if conn.execute(self._sql.ack, params).rowcount == 1:
            conn.execute(self._sql.untag, {"p_id": reservation.id, "p_queue": reservation.queue})

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        row = job_row(envelope)
        row["queue"] = reservation.queue
        params = {"p_id": reservation.id, "p_token": reservation.token}
        retag = [tag_row(envelope, tag, reservation.queue) for tag in tags(envelope)]
        untag = {"p_id": reservation.id, "p_queue": reservation.queue}

        def reinsert(conn: Connection) -> None:
            # Re-inserting gives the job a new seq: it goes behind its equals (in its tags too).
            if conn.execute(self._sql.ack, params).rowcount == 1:
                if TAGGED in reservation.raw:
                    conn.execute(self._sql.untag, untag)
                conn.execute(self._sql.insert, row)
                if retag:
                    conn.execute(self._sql.tag, retag)
                self._notify(conn, (reservation,))

        self._db.run(reinsert, what="release")

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        params = {
            "p_id": reservation.id,
            "p_token": reservation.token,
            "p_lease_until": self._clock.time() + lease_s,
        }
        result = self._db.run(
            lambda conn: conn.execute(self._sql.extend, params), what="extend", atomic=False
        )
        return result.rowcount == 1

    # -- inspecting -----------------------------------------------------
    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        sizes = {name: QueueSizes() for name in queues}
        if not queues:
            return sizes
        params = {"p_queues": list(queues), "p_now": self._clock.time()}
        rows = self._db.run(
            lambda conn: conn.execute(self._sql.sizes, params).all(), what="sizes", atomic=False
        )
        for name, ready, delayed, reserved in rows:
            sizes[name] = QueueSizes(int(ready or 0), int(delayed or 0), int(reserved or 0))
        return sizes

    def queue_names(self) -> list[str]:
        """Every queue that holds at least one job, by name: one index probe per queue."""
        return self._listings.queue_names(self._db)

    def sizes_up_to(self, queues: Sequence[str], cap: int) -> dict[str, QueueSizes]:
        """:meth:`sizes`, each count stopping at ``cap`` (see :class:`CappedSizes`)."""
        return self._listings.sizes_up_to(self._db, queues, cap, self._clock.time())

    def find(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        if not is_job_id(job_id):
            return None
        row = self._db.run(
            lambda conn: conn.execute(self._sql.find, {"p_id": job_id}).first(),
            what="finding a job",
            atomic=False,
        )
        return self._found(row, job_id, queues)

    def remove(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """One transaction: lock the job's row, then delete it if no worker holds it.

        The lock waits for a claim under way and claims skip the row meanwhile (SQLite
        runs the transaction alone), so the job is deleted or reported reserved, never both.
        """
        if not is_job_id(job_id):
            return None

        def take_out(conn: Connection) -> FoundJob | None:
            params = {"p_id": job_id}
            # Absent, looked for once more: on PostgreSQL a release the lock waited for
            # re-inserts the row after this statement's snapshot, which saw the old one go.
            row = conn.execute(self._sql.find_locked, params).first()
            row = row or conn.execute(self._sql.find_locked, params).first()
            found = self._found(row, job_id, queues)
            if row is not None and found is not None and found.state != "reserved":
                conn.execute(self._sql.delete_seq, {"p_seq": row.seq})
                if TAGGED in row.raw:
                    conn.execute(self._sql.untag, {"p_id": row.id, "p_queue": row.queue})
            return found

        return self._db.run(take_out, what="removing a job")

    def clear(self, queue: str) -> Cleared:
        def clear_queue(conn: Connection) -> Cleared:
            raws = conn.execute(self._sql.claiming, {"p_queue": queue}).scalars()
            claims = tuple(filter(None, (unique_claim(raw) for raw in raws)))
            count = conn.execute(self._sql.clear, {"p_queue": queue}).rowcount
            conn.execute(self._sql.clear_tags, {"p_queue": queue})
            return Cleared(int(count), claims)

        return self._db.run(clear_queue, what="clear")

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        limit: int = 50,
        cursor: str | None = None,
        tag: str | None = None,
    ) -> JobListing:
        """One indexed query per page (see :mod:`.listing` for each state's index): O(limit),
        plus with a tag the tagged jobs of other states walked past."""
        return self._listings.page(
            self._db, queue, state, limit=limit, cursor=cursor, tag=tag, now=self._clock.time()
        )

    def oldest_ready(self, queues: Sequence[str]) -> dict[str, float | None]:
        """One index probe per queue (``ix_kashq_jobs_state``), on one connection."""
        return self._listings.oldest_ready(self._db, queues, self._clock.time())

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
        params = {"p_like": like_prefix(prefix), "p_now": now}
        rows = self._db.run(
            lambda conn: conn.execute(self._sql.control_read, params).all(),
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
                lambda conn: conn.execute(self._sql.control_sweep, {"p_now": now}),
                what="deleting expired control records",
                atomic=False,
            )
        return dict(sorted(records.items()))

    def delete_control(self, name: str) -> bool:
        params = {"p_name": name, "p_now": self._clock.time()}
        result = self._db.run(
            lambda conn: conn.execute(self._sql.control_delete, params),
            what="deleting a control record",
            atomic=False,
        )
        return result.rowcount == 1

    def close(self) -> None:
        self._wakeups.close()
        self._db.close()

    # -- internals ------------------------------------------------------
    def _notify(self, conn: Connection, jobs: Sequence[Envelope | Reservation]) -> None:
        """Wake the workers waiting for the queues of ``jobs`` when ``conn``'s transaction
        commits (PostgreSQL; elsewhere they see the change by themselves: see :mod:`.wakeup`)."""
        if self._sql.insert_notify is not None:
            for params in notifications(self._notify_params, jobs):
                conn.execute(NOTIFY, params)

    def _found(self, row: Any, job_id: str, queues: Sequence[str] | None) -> FoundJob | None:
        # MySQL compares ids ignoring case and trailing spaces: only the exact id counts.
        if row is None or row.id != job_id or (queues is not None and row.queue not in queues):
            return None
        if row.token is not None:  # reserved: available_at is the end of its lease
            return FoundJob(row.queue, "reserved", row.raw, row.deliveries, row.available_at)
        state: JobState = "delayed" if row.available_at > self._clock.time() else "ready"
        return FoundJob(row.queue, state, row.raw, row.deliveries)

    def _take(
        self,
        conn: Connection,
        *,
        queues: Sequence[str],
        lease_s: float,
        acks: Sequence[Reservation],
        token: str,
        limit: int,
        calls: list[int],
    ) -> list[Reservation]:
        now = self._clock.time()
        calls[0] += 1
        if calls[0] > 1:
            taken = conn.execute(self._sql.by_token, {"p_token": token}).first()
            if taken is not None:
                return [Reservation(taken.id, taken.queue, taken.raw, taken.deliveries, token)]
        if acks and not self._claims.postgres:  # PostgreSQL: in the first claim statement
            self._ack_in(conn, acks)
            acks = ()
        for queue in queues:
            claimed = self._claims.claim(
                conn, queue, now=now, lease_s=lease_s, token=token, limit=limit, acks=acks
            )
            if claimed:
                return claimed
            acks = ()
        if acks:  # PostgreSQL, no queue given
            self._ack_in(conn, acks)
        return []
