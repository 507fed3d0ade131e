"""The Redis driver's reads for :meth:`Driver.list_jobs` and :meth:`Driver.oldest_ready`.

A page is one script call (``lua/list.lua``, or ``lua/list_tag.lua`` for a tag),
so it is one consistent view of the queue in one round trip, costing O(limit +
log n); a tag's page walks at most :data:`TAG_WALK` entries of its index. Its
cursor is the last listed entry of the set it walks: (score, member) of the
state's sorted set (ready: -priority and ``<seq>|<id>``; delayed: available_at
and id; reserved: lease deadline and id), or the seq of a tag index's entry,
found again by rank (or, once it has left, by bisection). A ready page first
moves the delayed jobs that fell due to the ready set, as a reserve would (find
calls them ready already), so it reads no more than it lists; every other read
writes nothing but the stale entries of a tag index it passes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from kashq.drivers import cursor as cursors
from kashq.drivers.base import FoundJob, JobListing, JobState, ListedJob
from kashq.drivers.redis.keys import QueueKeys
from kashq.drivers.redis.scripts import Scripts, text_of

TAG_WALK = 1000
"""The most entries of a tag's index one page walks (it answers a short page beyond)."""

Run = Callable[..., list[Any]]  # the driver's _run: build -> replies


def page(
    run: Run,
    scripts: Scripts,
    keys: QueueKeys,
    queue: str,
    state: JobState,
    *,
    limit: int,
    cursor: str | None,
    tag: str | None,
    now: Callable[[], float],
) -> JobListing:
    """One page of ``queue``'s jobs in ``state`` (see :meth:`Driver.list_jobs`)."""
    cursors.check_listing(state, limit, tag)
    kind = cursors.listing_kind(state, tag)
    if tag is not None:
        seq = cursors.decode(cursor, kind, "i")
        after = "" if seq is None else str(seq[0])
        reply = run(
            lambda t: scripts.list_tag(
                t, keys, tag, state, now(), limit=limit, after=after, walk=TAG_WALK
            )
        )[0]
        jobs = [_listed(queue, state, reply[i : i + 4]) for i in range(1, len(reply), 4)]
        go_on = text_of(reply[0])
        return JobListing(jobs, cursors.encode(kind, (int(float(go_on)),)) if go_on else None)
    position = cursors.decode(cursor, kind, "fs")
    entry = ("", "") if position is None else (repr(position[0]), str(position[1]))
    while True:  # 'again': due delayed jobs were moved to ready, and more are due
        reply = run(lambda t: scripts.list_page(t, keys, state, now(), limit=limit, after=entry))[0]
        if text_of(reply[0]) != "again":
            break
    rows = [reply[i : i + 5] for i in range(1, len(reply), 5)]
    jobs = [_listed(queue, state, row[:4]) for row in rows]
    if int(reply[0]) != 1:
        return JobListing(jobs, None)
    score, member = rows[-1][3:5]
    return JobListing(jobs, cursors.encode(kind, (float(score), text_of(member))))


def _listed(queue: str, state: JobState, row: Sequence[Any]) -> ListedJob:
    job_id, raw, deliveries, score = (text_of(part) for part in row)
    lease_until = float(score) if state == "reserved" and score else None
    return ListedJob(job_id, FoundJob(queue, state, raw, int(deliveries), lease_until))


def oldest(
    run: Run, scripts: Scripts, keys: Callable[[str], QueueKeys], queues: Sequence[str], now: float
) -> dict[str, float | None]:
    """For each queue, the earliest ``available_at`` among its due delayed jobs (the first
    of its delayed set) and the next job of each of its priorities: one read-only
    ``lua/oldest.lua`` per queue, in one pipeline.

    Exact while the ready set's order (priority, then push order) agrees with the
    jobs' times. A delayed or retried job that a reserve moved to the ready set goes
    to its place by push order, ahead of jobs pushed after it that may have waited
    longer, and hides them until a worker takes it: the answer is then that job's
    time, later than the oldest, never earlier.
    """

    def build(pipe: Any) -> None:
        for queue in queues:
            scripts.oldest(pipe, keys(queue), now)

    replies = run(build, pipeline=True) if queues else []
    found: dict[str, float | None] = {}
    for queue, reply in zip(queues, replies, strict=True):
        times = [float(text_of(reply[0]))] if text_of(reply[0]) else []
        times += [at for raw in reply[1:] if (at := _available_at(text_of(raw))) is not None]
        found[queue] = min(times, default=None)
    return found


def _available_at(raw: str) -> float | None:
    """The ``available_at`` of stored envelope ``raw``; None if it has none to read."""
    try:
        value = json.loads(raw).get("available_at")
    except (ValueError, AttributeError, RecursionError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
