"""The database driver's reads for :meth:`Driver.list_jobs` and :meth:`Driver.oldest_ready`.

Each page is one indexed query, resumed after the cursor's position by keyset
(never by OFFSET), fetching one row more than asked to know whether a next page
exists:

============  ================================================================
``ready``     ``ix_kashq_jobs_reserve`` (queue, priority DESC, seq) from the
              position (priority, seq): reserve's own walk, so it passes the
              delayed and held rows lying in between, as reserve does
``delayed``   ``ix_kashq_jobs_state`` (queue, token, available_at, seq), token
              NULL and not yet due, from (available_at, seq)
``reserved``  ``ix_kashq_jobs_state``, token set: the jobs workers hold (as many
              as they hold, never the queue), by (lease end, seq)
a tag         ``ix_kashq_job_tags_tag`` (queue, tag, seq) from the tag row's seq,
              each row joined to its job by id; rows of jobs in another state
              are walked past
============  ================================================================

The oldest ready job is the first row of ``ix_kashq_jobs_state`` for (queue,
token NULL) whose ``available_at`` has come: one index probe per queue. So are
the next delayed job's time (the first whose time has not come) and the queues'
names (the next name after the last); the capped sizes are three range scans of
it per queue, each stopping at the cap.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Double,
    Integer,
    Select,
    bindparam,
    func,
    literal_column,
    select,
)

from kashq.db.engine import Database
from kashq.db.schema import SEQ_TYPE, Tables
from kashq.drivers import cursor as cursors
from kashq.drivers.base import FoundJob, JobListing, JobState, ListedJob, QueueSizes

_SHAPES = {"ready": "ii", "delayed": "fi", "reserved": "fi"}
_LIMIT = bindparam("p_limit", type_=Integer)


class Listings:
    """The listing statements on one set of tables (see :func:`listings`)."""

    def __init__(self, t: Tables, dialect: str) -> None:
        c, g = t.jobs.c, t.job_tags.c
        queue, now = c.queue == bindparam("p_queue"), bindparam("p_now", type_=Double)
        columns = (c.id, c.queue, c.raw, c.deliveries, c.available_at, c.priority, c.seq)
        self._states: dict[str, ColumnElement[bool]] = {
            "ready": c.token.is_(None) & (c.available_at <= now),
            "delayed": c.token.is_(None) & (c.available_at > now),
            "reserved": c.token.is_not(None),
        }
        # Ready rows are read in reserve's index order; left to themselves, SQLite and MySQL
        # would rather take the state index and sort every ready row (a unary + keeps SQLite
        # off an index for that term).
        reserve_index = next(i.name for i in t.jobs.indexes if str(i.name).endswith("_reserve"))
        is_ready = self._states["ready"]
        if dialect == "sqlite":
            is_ready = literal_column("+token").is_(None) & (literal_column("+available_at") <= now)
        ready = (
            select(*columns)
            .where(queue & is_ready)
            .order_by(c.priority.desc(), c.seq)
            .limit(_LIMIT)
            .with_hint(t.jobs, f"FORCE INDEX ({reserve_index})", "mysql")
            .with_hint(t.jobs, f"FORCE INDEX ({reserve_index})", "mariadb")
        )
        p = bindparam("p_priority", type_=Integer)
        a, s = bindparam("p_at", type_=Double), bindparam("p_seq", type_=SEQ_TYPE)
        by_time = (c.available_at >= a) & ((c.available_at > a) | (c.seq > s))
        self.first: dict[str, Select[Any]] = {"ready": ready}
        self.after: dict[str, Select[Any]] = {
            "ready": ready.where((c.priority <= p) & ((c.priority < p) | (c.seq > s)))
        }
        # Waiting rows (token NULL) come in the state index's order; PostgreSQL sees that only
        # when the ORDER BY names the token too (MySQL then sorts). Held rows are sorted: as
        # many as workers hold.
        by_token = (c.token,) if dialect == "postgresql" else ()
        delayed = select(*columns).where(queue & self._states["delayed"])
        self.first["delayed"] = delayed.order_by(*by_token, c.available_at, c.seq).limit(_LIMIT)
        held = select(*columns).where(queue & self._states["reserved"])
        self.first["reserved"] = held.order_by(c.available_at, c.seq).limit(_LIMIT)
        for state in ("delayed", "reserved"):
            self.after[state] = self.first[state].where(by_time)
        tagged = (
            select(g.seq.label("tag_seq"), *columns)
            .select_from(t.job_tags.join(t.jobs, (c.id == g.job_id) & (c.queue == g.queue)))
            .where((g.queue == bindparam("p_queue")) & (g.tag == bindparam("p_tag")))
            .where(g.seq > bindparam("p_tag_seq"))
            .order_by(g.seq)
            .limit(_LIMIT)
        )
        self.tagged = {state: tagged.where(where) for state, where in self._states.items()}
        self.oldest = (
            select(c.available_at)
            .where(queue & self._states["ready"])
            .order_by(*by_token, c.available_at)
            .limit(1)
        )
        self.next_delayed = (
            select(c.available_at)
            .where(queue & self._states["delayed"])
            .order_by(*by_token, c.available_at)
            .limit(1)
        )
        self.first_queue = select(func.min(c.queue))
        self.next_queue = select(func.min(c.queue)).where(c.queue > bindparam("p_after"))
        self.capped_sizes = _capped_sizes(t)

    def page(
        self,
        db: Database,
        queue: str,
        state: JobState,
        *,
        limit: int,
        cursor: str | None,
        tag: str | None,
        now: float,
    ) -> JobListing:
        """One page of ``queue``'s jobs in ``state`` (see :meth:`Driver.list_jobs`)."""
        cursors.check_listing(state, limit, tag)
        kind = cursors.listing_kind(state, tag)
        after = cursors.decode(cursor, kind, "i" if tag is not None else _SHAPES[state])
        params: dict[str, Any] = {"p_queue": queue, "p_now": now, "p_limit": limit + 1}
        if tag is not None:
            statement = self.tagged[state]
            params.update(p_tag=tag, p_tag_seq=0 if after is None else after[0])
        elif after is None:
            statement = self.first[state]
        else:
            statement = self.after[state]
            first = "p_priority" if state == "ready" else "p_at"
            params.update({first: after[0], "p_seq": after[1]})
        rows = db.run(
            lambda conn: conn.execute(statement, params).all(), what="listing jobs", atomic=False
        )
        jobs = [ListedJob(row.id, _found(row, state)) for row in rows[:limit]]
        if len(rows) <= limit:
            return JobListing(jobs, None)
        last = rows[limit - 1]
        if tag is not None:
            position: tuple[int | float, ...] = (last.tag_seq,)
        else:
            position = (last.priority if state == "ready" else last.available_at, last.seq)
        return JobListing(jobs, cursors.encode(kind, position))

    def queue_names(self, db: Database) -> list[str]:
        """Every queue holding a job, by name: one index probe per queue (a DISTINCT would
        read every row)."""

        def walk(conn: Connection) -> list[str]:
            names: list[str] = []
            name = conn.execute(self.first_queue).scalar()
            while name is not None:
                names.append(name)
                name = conn.execute(self.next_queue, {"p_after": name}).scalar()
            return names

        return db.run(walk, what="listing queues", atomic=False)

    def sizes_up_to(
        self, db: Database, queues: Sequence[str], cap: int, now: float
    ) -> dict[str, QueueSizes]:
        """Each queue's sizes, each state counted up to ``cap`` rows, on one connection."""

        def count(conn: Connection) -> dict[str, QueueSizes]:
            found = {}
            for name in queues:
                params = {"p_queue": name, "p_now": now, "p_cap": cap}
                ready, delayed, held = conn.execute(self.capped_sizes, params).one()
                found[name] = QueueSizes(int(ready), int(delayed), int(held))
            return found

        return db.run(count, what="sizes", atomic=False)

    def oldest_ready(
        self, db: Database, queues: Sequence[str], now: float
    ) -> dict[str, float | None]:
        """The oldest ready job's ``available_at`` per queue: one index probe each, all on
        one connection."""

        def probe(conn: Connection) -> dict[str, float | None]:
            return {
                queue: conn.execute(self.oldest, {"p_queue": queue, "p_now": now}).scalar()
                for queue in queues
            }

        return db.run(probe, what="reading the oldest ready jobs", atomic=False)

    def next_due(self, db: Database, queues: Sequence[str], now: float) -> float | None:
        """When the first delayed job of ``queues`` falls due (None: none is delayed): one
        index probe per queue, all on one connection."""

        def probe(conn: Connection) -> float | None:
            params = [{"p_queue": queue, "p_now": now} for queue in queues]
            due = [conn.execute(self.next_delayed, p).scalar() for p in params]
            return min((at for at in due if at is not None), default=None)

        return db.run(probe, what="reading when the next delayed job falls due", atomic=False)


def _capped_sizes(t: Tables) -> Select[Any]:
    """One queue's ready, delayed and reserved jobs, each counted up to ``p_cap`` rows (three
    index range scans that stop at the cap)."""
    c, cap = t.jobs.c, bindparam("p_cap", type_=Integer)
    now = bindparam("p_now", type_=Double)
    queue = c.queue == bindparam("p_queue")

    def counted(where: ColumnElement[bool], name: str) -> Any:
        rows = select(c.queue).where(queue & where).limit(cap).subquery(name)  # index only
        return select(func.count()).select_from(rows).scalar_subquery()

    return select(
        counted(c.available_at <= now, "ready"),
        counted(c.token.is_(None) & (c.available_at > now), "delayed"),
        counted(c.token.is_not(None) & (c.available_at > now), "held"),
    )


def _found(row: Any, state: JobState) -> FoundJob:
    lease_until = row.available_at if state == "reserved" else None
    return FoundJob(row.queue, state, row.raw, row.deliveries, lease_until)


@functools.cache
def listings(t: Tables, dialect: str) -> Listings:
    """The listing statements on ``t`` for ``dialect``, built once per table prefix."""
    return Listings(t, dialect)
