"""The transactional outbox: jobs dispatched inside an application's transaction for the
Redis connections, pushed by a relay once that transaction commits.

``dispatch(using=session)`` on the ``redis`` (or ``sharded``) connection writes
the job as a row of ``kashq_outbox`` in the caller's transaction, in the
database of ``KASHQ_DATABASE_URL``: it exists if and only if the application's
own writes do. The relay (a thread of ``queue:work``, or ``kashq
outbox:relay``) takes up to ``RELAY_CHUNK`` rows in order, in one transaction
(``FOR UPDATE SKIP LOCKED``, so several relays share the work), pushes each
with ``push_once`` and deletes them. ``push_once`` remembers the ids it stored
for a day, so a relay killed after pushing and before its transaction
committed pushes nothing the second time: each row becomes exactly one job.

The relay wakes as workers do (:mod:`kashq.drivers.database.wakeup`): a
notification on PostgreSQL (sent when the dispatching transaction commits),
the database's files on SQLite, polls that back off on MySQL/MariaDB. A row
that cannot be read as a job, or names a connection this process does not
have, stays in the table and is reported once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import URL, Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database, sqlite_path
from kashq.drivers.base import Driver
from kashq.drivers.database.wakeup import NOTIFY, wakeups
from kashq.envelope import Envelope, decode
from kashq.exceptions import DriverError, KashqError
from kashq.transactions import Transaction

log = logging.getLogger(__name__)

RELAY_CHUNK = 500
"""Rows one relay transaction takes at most."""
CHANNEL = "kashq_outbox"
"""The PostgreSQL notification channel, after the table prefix."""
_RETRY_MAX_S = 30.0  # longest pause after a failed relay pass
IDLE_WAIT_S = 1.0
"""The longest the relay waits between passes while nothing wakes it."""


class Outbox:
    """The ``kashq_outbox`` table of one database: written in callers' transactions, read
    by :meth:`relay`."""

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        clock: Clock = SYSTEM_CLOCK,
        table_prefix: str | None = None,
        poll_interval_s: float = 0.05,
    ) -> None:
        self._db = Database(engine_or_url, error=DriverError, table_prefix=table_prefix)
        self._table = self._db.tables.outbox
        self._clock = clock
        self._channel = self._db.tables.prefix + CHANNEL
        self._wakeups = wakeups(self._db.engine, self._channel, poll_interval_s)
        self._reported: set[int] = set()  # rows reported as unusable, not again

    @property
    def url(self) -> str:
        """The database's URL, its password hidden."""
        return self._db.url

    def put_in(
        self, transaction: Transaction, connection: str, envelopes: Sequence[Envelope]
    ) -> None:
        """Write ``envelopes`` for ``connection`` in the caller's ``transaction``."""
        dialect = self._db.engine.dialect
        transaction.check(dialect, f"kashq's outbox ({self._db.url})")
        self._db.ensure_schema_beside()
        now = self._clock.time()
        rows = [
            {"connection": connection, "raw": env.encode(), "created_at": now} for env in envelopes
        ]
        try:
            transaction.execute(insert(self._table), rows, dialect)
            if dialect.name == "postgresql":  # the relay wakes when the caller commits
                transaction.execute(NOTIFY, {"p_channel": self._channel, "p_queue": ""}, dialect)
        except (SQLAlchemyError, dialect.loaded_dbapi.Error) as exc:
            raise self._db.error("writing to the outbox", exc) from exc

    def pending(self) -> int:
        """How many rows wait for the relay."""
        count = select(func.count()).select_from(self._table)
        return int(
            self._db.run(
                lambda conn: conn.execute(count).scalar_one(),
                what="counting the outbox",
                atomic=False,
            )
        )

    def relay(self, connection_of: Callable[[str], Driver], *, limit: int = RELAY_CHUNK) -> int:
        """One pass: push up to ``limit`` rows, in order, and delete them; how many went."""
        path = sqlite_path(self._db.engine.url)
        if path is not None and not path.exists():
            return 0  # nothing was ever dispatched there: do not create the file
        t = self._table
        rows_of = select(t.c.seq, t.c.connection, t.c.raw).order_by(t.c.seq).limit(limit)
        rows_of = rows_of.with_for_update(skip_locked=True)

        def push_then_delete(conn: Connection) -> int:
            done = []
            for seq, connection, raw in conn.execute(rows_of).all():
                envelope = self._usable(seq, connection, raw, connection_of)
                if envelope is not None:
                    connection_of(connection).push_once(envelope)
                    done.append(seq)
            if done:
                conn.execute(delete(t).where(t.c.seq.in_(done)))
            return len(done)

        return self._db.run(push_then_delete, what="relaying the outbox")

    def relay_all(self, connection_of: Callable[[str], Driver]) -> int:
        """Passes of :meth:`relay` until one is not full; how many rows went in all."""
        total = 0
        while (relayed := self.relay(connection_of, limit=RELAY_CHUNK)) > 0:
            total += relayed
            if relayed < RELAY_CHUNK:
                break
        return total

    def run(self, connection_of: Callable[[str], Driver], stop: threading.Event) -> None:
        """Relay until ``stop`` is set, waking for new rows; failures are logged, then tried
        again after a pause that grows."""
        pause_s, failing = 1.0, False
        while True:
            mark = self._wakeups.mark([""])  # before the check: a stop after it ends the wait
            if stop.is_set():
                return
            try:
                relayed = self.relay(connection_of)
            except KashqError as exc:
                if not failing:
                    log.warning("could not relay the outbox (%s); trying again", exc)
                failing = True
                stop.wait(pause_s)
                pause_s = min(pause_s * 2, _RETRY_MAX_S)
                continue
            if failing:
                log.warning("relaying the outbox again")
            pause_s, failing = 1.0, False
            if relayed >= RELAY_CHUNK:
                continue  # more are waiting
            if relayed:
                self._wakeups.found()
            self._wakeups.wait(mark, [""], IDLE_WAIT_S)

    def wake(self) -> None:
        """End :meth:`run`'s wait now (it then looks at its ``stop`` event)."""
        self._wakeups.wake()

    def close(self) -> None:
        self._wakeups.close()
        self._db.close()

    def _usable(
        self, seq: int, connection: str, raw: str, connection_of: Callable[[str], Driver]
    ) -> Envelope | None:
        """The row's job, or None (reported once) if it cannot be pushed from here."""
        try:
            connection_of(connection)
            return decode(raw)
        except (KashqError, ValueError) as exc:
            if seq not in self._reported:
                self._reported.add(seq)
                log.error("outbox row %d stays: %s", seq, exc)
            return None


class RelayThread:
    """``outbox.run`` on a daemon thread (``queue:work``'s relay), stopped by :meth:`stop`."""

    def __init__(self, outbox: Outbox, connection_of: Callable[[str], Driver]) -> None:
        self._outbox = outbox
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=outbox.run, args=(connection_of, self._stop), name="kashq-outbox", daemon=True
        )

    def start(self) -> RelayThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._outbox.wake()
        self._thread.join(timeout_s)
