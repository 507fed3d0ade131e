"""The database driver's SQL statements, built once per set of tables.

Each statement takes its values as bind parameters named ``p_*``, so one
compiled statement serves every call. The claims are built in :mod:`.claims`.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Select,
    String,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from kashq.db.schema import MYSQL, Tables
from kashq.envelope import UNIQUE_KEY

LIKE_ESCAPE = "/"
JOB_COLUMNS = ("id", "queue", "raw", "priority", "available_at", "token", "deliveries")
"""The columns of a job's row that a push writes (see :func:`.rows.job_row`)."""


class Statements:
    """The driver's statements on one set of tables (see :func:`statements`)."""

    def __init__(self, t: Tables, dialect: str) -> None:
        jobs, c, control, k = t.jobs, t.jobs.c, t.control, t.control.c
        self.insert = insert(jobs)
        # PostgreSQL: insert one job and wake the workers waiting for its queue (.wakeup).
        self.insert_notify: Select[Any] | None = None
        if dialect == "postgresql":
            pushed = insert(jobs).values({n: bindparam(n) for n in JOB_COLUMNS}).cte("pushed")
            notify = func.pg_notify(
                bindparam("p_channel", type_=String), bindparam("queue", type_=String)
            )
            self.insert_notify = select(notify).add_cte(pushed)
        owned = (c.id == bindparam("p_id")) & (c.token == bindparam("p_token"))
        self.ack = delete(jobs).where(owned)
        # Several jobs, each held under a token of its own (one per reserve call), so a
        # row matching an id and some token of the list is one of them.
        self.ack_ids = delete(jobs).where(
            c.id.in_(bindparam("p_ids", expanding=True))
            & c.token.in_(bindparam("p_tokens", expanding=True))
        )
        self.extend = update(jobs).where(owned).values(available_at=bindparam("p_lease_until"))
        self.sizes = _sizes_query(t)
        self.clear = delete(jobs).where(c.queue == bindparam("p_queue"))
        self.claiming = select(c.raw).where(  # the raws holding a unique claim
            (c.queue == bindparam("p_queue")) & c.raw.contains(UNIQUE_KEY, autoescape=True)
        )
        in_ids = c.id.in_(bindparam("p_ids", expanding=True))
        self.held_ids = select(c.id).where(in_ids & c.token.is_not(None))
        self.delete_waiting_ids = delete(jobs).where(in_ids & c.token.is_(None))
        # A reserve repeated after a lost reply finds the job its token already holds.
        self.by_token = select(c.id, c.queue, c.raw, c.deliveries).where(
            c.token == bindparam("p_token")
        )
        self.find = select(c.id, c.queue, c.raw, c.available_at, c.token, c.deliveries).where(
            c.id == bindparam("p_id")  # the unique index on id
        )
        # remove: the lock waits for a claim under way, and claims skip the row it holds.
        self.find_locked = self.find.add_columns(c.seq).with_for_update()
        self.delete_seq = delete(jobs).where(c.seq == bindparam("p_seq"))
        # The tag index: a leaving job's rows go with it (by the index on job_id).
        g = t.job_tags.c
        # PostgreSQL: a job with tags is acked with its tag rows in one statement (a
        # data-modifying CTE deletes the rows of the job the other acked).
        acked = self.ack.returning(c.id).cte("acked")
        self.ack_untag = delete(t.job_tags).where(g.job_id.in_(select(acked.c.id))).add_cte(acked)
        self.tag = insert(t.job_tags)
        self.untag = delete(t.job_tags).where(
            (g.job_id == bindparam("p_id")) & (g.queue == bindparam("p_queue"))
        )
        self.untag_ids = delete(t.job_tags).where(g.job_id.in_(bindparam("p_ids", expanding=True)))
        self.clear_tags = delete(t.job_tags).where(g.queue == bindparam("p_queue"))
        is_expired = k.expires_at <= bindparam("p_now")
        # Expired records of any name come along, so any reader can sweep them.
        self.control_read = select(k.name, k.value, k.expires_at).where(
            k.name.like(bindparam("p_like"), escape=LIKE_ESCAPE) | is_expired
        )
        self.control_sweep = delete(control).where(is_expired)
        self.control_delete = delete(control).where(
            (k.name == bindparam("p_name"))
            & (k.expires_at.is_(None) | (k.expires_at > bindparam("p_now")))
        )
        once = t.job_once.c
        self.once_insert = insert(t.job_once)
        self.once_forget = delete(t.job_once).where(
            (once.id == bindparam("p_id")) & (once.expires_at <= bindparam("p_now"))
        )
        self.once_sweep = delete(t.job_once).where(once.expires_at <= bindparam("p_now"))


def _sizes_query(t: Tables) -> Select[Any]:
    c = t.jobs.c
    is_ready = c.available_at <= bindparam("p_now")
    is_waiting = c.token.is_(None) & (c.available_at > bindparam("p_now"))
    is_held = c.token.is_not(None) & (c.available_at > bindparam("p_now"))
    return (
        select(
            c.queue,
            func.sum(case((is_ready, 1), else_=0)),
            func.sum(case((is_waiting, 1), else_=0)),
            func.sum(case((is_held, 1), else_=0)),
        )
        .where(c.queue.in_(bindparam("p_queues", expanding=True)))
        .group_by(c.queue)
    )


@functools.cache
def statements(t: Tables, dialect: str) -> Statements:
    """The statements on ``t``, built once per table prefix and dialect."""
    return Statements(t, dialect)


def control_upsert(dialect: str, control: Table) -> Insert:
    """An insert of a control record that replaces one of the same name, atomically."""
    if dialect in MYSQL:
        on_mysql = mysql.insert(control)
        return on_mysql.on_duplicate_key_update(
            value=on_mysql.inserted.value, expires_at=on_mysql.inserted.expires_at
        )
    if dialect == "sqlite":
        on_sqlite = sqlite.insert(control)
        return on_sqlite.on_conflict_do_update(
            index_elements=[control.c.name],
            set_={"value": on_sqlite.excluded.value, "expires_at": on_sqlite.excluded.expires_at},
        )
    on_postgres = postgresql.insert(control)
    return on_postgres.on_conflict_do_update(
        index_elements=[control.c.name],
        set_={"value": on_postgres.excluded.value, "expires_at": on_postgres.excluded.expires_at},
    )


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching names that start with ``prefix`` taken literally."""
    for special in (LIKE_ESCAPE, "%", "_"):
        prefix = prefix.replace(special, LIKE_ESCAPE + special)
    return prefix + "%"
