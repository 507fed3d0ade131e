"""The database driver's batch claim: up to N jobs of a queue per statement (the prefetch).

One call acknowledges the worker's finished jobs and claims the next ones, in
one transaction:

- PostgreSQL: one statement. Data-modifying CTEs delete the acknowledged rows
  (and their tag rows), pick up to N eligible rows with ``FOR UPDATE SKIP
  LOCKED``, rank them, and claim them, returning what was claimed;
- SQLite and MySQL/MariaDB: the acknowledgements, a ``SELECT`` of up to N rows
  (``FOR UPDATE SKIP LOCKED`` on MySQL; SQLite's writes are serialised) and two
  ``UPDATE``\\ s (the first job, then the others).

The first job claimed is held under the call's token, as a single reserve
holds it; each one after it (prefetched) under ``<token>.<seq>``. A prefetched
job may never have started if its worker dies, so a row whose lease lapsed
while its token had a dot is claimed without counting a delivery, and alone
(the claim stops before it, or takes only it): a job that kills its worker is
counted the next time, and the jobs that merely waited behind it never are.
``unreserve`` gives prefetched jobs back unstarted: their tokens go, their
deliveries are taken back, and their rows keep their place (the same ``seq``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    TextClause,
    bindparam,
    cast,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql

from kashq.db.schema import Tables
from kashq.drivers.base import Reservation

TAGGED = '"tags"'  # in the text of every tagged envelope (and of few others)
PREFETCHED = "."  # in the token of every prefetched job, never in a first job's


def _postgres_claim(t: Tables, *, untag: bool) -> TextClause:
    jobs, tags = t.jobs.name, t.job_tags.name
    untagging = (
        f", untagged AS (DELETE FROM {tags} WHERE job_id IN (SELECT id FROM acked))"
        if untag
        else ""
    )
    # "solo": a prefetched job whose lease lapsed (its worker vanished): claimed alone,
    # its delivery not counted again. The claim stops before the first solo row, or
    # takes only it when it comes first.
    sql = f"""
WITH acked AS (
  DELETE FROM {jobs} WHERE id = ANY(:p_ack_ids) AND token = ANY(:p_ack_tokens) RETURNING id
){untagging}, picked AS (
  SELECT seq, priority, coalesce(strpos(token, '{PREFETCHED}') > 0, false) AS solo
  FROM {jobs}
  WHERE queue = :p_queue AND available_at <= :p_now AND NOT (id = ANY(:p_ack_ids))
  ORDER BY priority DESC, seq
  LIMIT :p_limit
  FOR UPDATE SKIP LOCKED
), ranked AS (
  SELECT seq, solo, row_number() OVER (ORDER BY priority DESC, seq) AS place FROM picked
), taken AS (
  SELECT seq, solo, place FROM ranked
  WHERE place = 1 OR place < (SELECT coalesce(min(place), :p_limit + 1) FROM ranked WHERE solo)
)
UPDATE {jobs} AS j
SET token = CASE WHEN taken.place = 1 THEN :p_token
                 ELSE :p_token || '{PREFETCHED}' || j.seq END,
    deliveries = j.deliveries + CASE WHEN taken.solo THEN 0 ELSE 1 END,
    available_at = :p_lease_until
FROM taken
WHERE j.seq = taken.seq
RETURNING j.id, j.raw, j.deliveries, j.token, taken.place
"""
    ids = postgresql.ARRAY(String)
    return text(sql).bindparams(
        bindparam("p_ack_ids", type_=ids),
        bindparam("p_ack_tokens", type_=ids),
        bindparam("p_limit", type_=Integer),
    )


class Claims:
    """The batch claim's statements on one set of tables and dialect."""

    def __init__(self, t: Tables, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        c = t.jobs.c
        if self.postgres:
            self._claim = _postgres_claim(t, untag=False)
            self._claim_untag = _postgres_claim(t, untag=True)
        self._pick = (
            select(c.seq, c.id, c.raw, c.deliveries, c.token)
            .where((c.queue == bindparam("p_queue")) & (c.available_at <= bindparam("p_now")))
            .order_by(c.priority.desc(), c.seq)
            .limit(bindparam("p_limit", type_=Integer))
            .with_for_update(skip_locked=True)
        )
        held: dict[str, Any] = {"available_at": bindparam("p_lease_until")}
        self._claim_first = (
            update(t.jobs)
            .where(c.seq == bindparam("p_seq"))
            .values(
                token=bindparam("p_token"), deliveries=c.deliveries + bindparam("p_count"), **held
            )
        )
        self._claim_rest = (
            update(t.jobs)
            .where(c.seq.in_(bindparam("p_seqs", expanding=True)))
            .values(
                token=bindparam("p_dotted", type_=String) + cast(c.seq, String),
                deliveries=c.deliveries + 1,
                **held,
            )
        )
        self.unreserve = (
            update(t.jobs)
            .where(
                c.id.in_(bindparam("p_ids", expanding=True))
                & c.token.in_(bindparam("p_tokens", expanding=True))
            )
            .values(token=None, available_at=bindparam("p_now"), deliveries=c.deliveries - 1)
        )

    def claim(
        self,
        conn: Connection,
        queue: str,
        *,
        now: float,
        lease_s: float,
        token: str,
        limit: int,
        acks: Sequence[Reservation],
    ) -> list[Reservation]:
        """Claim up to ``limit`` jobs of ``queue`` under ``token``, first acknowledging
        ``acks`` in the same statement (PostgreSQL only: elsewhere the caller acknowledges
        them first, in the same transaction)."""
        if self.postgres:
            statement = self._claim_untag if any(TAGGED in a.raw for a in acks) else self._claim
            params = {
                "p_ack_ids": [a.id for a in acks],
                "p_ack_tokens": [a.token for a in acks],
                "p_queue": queue,
                "p_now": now,
                "p_limit": limit,
                "p_token": token,
                "p_lease_until": now + lease_s,
            }
            rows = sorted(conn.execute(statement, params).all(), key=lambda row: row.place)
            return [Reservation(r.id, queue, r.raw, r.deliveries, r.token) for r in rows]
        params = {"p_queue": queue, "p_now": now, "p_limit": limit}
        picked = conn.execute(self._pick, params).all()
        if not picked:
            return []
        first, *rest = picked
        solo = first.token is not None and PREFETCHED in first.token
        if solo:
            rest = []
        else:
            cut = next((i for i, r in enumerate(rest) if r.token and PREFETCHED in r.token), None)
            rest = rest if cut is None else rest[:cut]
        held = {"p_lease_until": now + lease_s}
        count = 0 if solo else 1
        conn.execute(
            self._claim_first, {"p_seq": first.seq, "p_token": token, "p_count": count, **held}
        )
        if rest:
            dotted = token + PREFETCHED
            conn.execute(
                self._claim_rest, {"p_seqs": [r.seq for r in rest], "p_dotted": dotted, **held}
            )
        claimed = [Reservation(first.id, queue, first.raw, first.deliveries + count, token)]
        claimed += [
            Reservation(r.id, queue, r.raw, r.deliveries + 1, f"{dotted}{r.seq}") for r in rest
        ]
        return claimed


@functools.cache
def claims(t: Tables, dialect: str) -> Claims:
    """The batch claim's statements on ``t``, built once per table prefix and dialect."""
    return Claims(t, dialect)
