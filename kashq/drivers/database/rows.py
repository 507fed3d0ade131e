"""The rows the database driver writes for a job: the job's own, and one per tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect

from kashq.drivers.base import Reservation
from kashq.drivers.database.statements import Statements
from kashq.drivers.database.wakeup import NOTIFY
from kashq.envelope import Envelope
from kashq.transactions import Transaction

DELETE_CHUNK = 500


def job_row(envelope: Envelope) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "queue": envelope.queue,
        "raw": envelope.encode(),
        "priority": envelope.priority,
        "available_at": envelope.available_at,
        "token": None,
        "deliveries": 0,
    }


def tags(envelope: Envelope) -> dict[str, None]:
    """The envelope's tags, each once (a row per tag)."""
    return dict.fromkeys(envelope.tags)


def tag_row(envelope: Envelope, tag: str, queue: str | None = None) -> dict[str, Any]:
    return {"queue": queue or envelope.queue, "tag": tag, "job_id": envelope.id}


def tag_rows(envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
    """The tag rows of ``envelopes``: one per tag of each tagged job."""
    return [tag_row(env, tag) for env in envelopes if env.tags for tag in tags(env)]


def notifications(
    notify: dict[str, str], jobs: Sequence[Envelope | Reservation]
) -> list[dict[str, str]]:
    """The parameters of one ``NOTIFY`` per queue of ``jobs`` (``notify``: the channel's)."""
    return [{**notify, "p_queue": queue} for queue in dict.fromkeys(job.queue for job in jobs)]


def replace(conn: Connection, sql: Statements, envelopes: Sequence[Envelope]) -> None:
    """Insert ``envelopes``, replacing waiting jobs with the same ids (the last copy wins).

    A job with the same id that a worker holds (it has a token) is left alone
    and its new copy dropped, so repeating a push is harmless. A replaced job's
    tag rows go with it.
    """
    latest: dict[str, Envelope] = {}
    for env in envelopes:
        latest.pop(env.id, None)
        latest[env.id] = env
    ids = list(latest)
    held: set[str] = set()
    for start in range(0, len(ids), DELETE_CHUNK):
        chunk = ids[start : start + DELETE_CHUNK]
        held_now = set(conn.execute(sql.held_ids, {"p_ids": chunk}).scalars())
        conn.execute(sql.delete_waiting_ids, {"p_ids": chunk})
        if replaced := [job_id for job_id in chunk if job_id not in held_now]:
            conn.execute(sql.untag_ids, {"p_ids": replaced})
        held |= held_now
    fresh = [env for job_id, env in latest.items() if job_id not in held]
    if fresh:
        conn.execute(sql.insert, [job_row(env) for env in fresh])
    if rows := tag_rows(fresh):
        conn.execute(sql.tag, rows)


def insert_in(
    transaction: Transaction,
    dialect: Dialect,
    sql: Statements,
    envelopes: Sequence[Envelope],
    notify: dict[str, str] | None,
) -> None:
    """Insert ``envelopes`` (and their tag rows) in the caller's ``transaction``; with
    ``notify`` (PostgreSQL's channel), wake the workers of their queues at its commit."""
    transaction.execute(sql.insert, [job_row(env) for env in envelopes], dialect)
    if rows := tag_rows(envelopes):
        transaction.execute(sql.tag, rows, dialect)
    if notify is not None:
        for params in notifications(notify, envelopes):
            transaction.execute(NOTIFY, params, dialect)
