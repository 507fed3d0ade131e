"""Listing a sharded connection's jobs, and their oldest ready job, over every shard.

A listing walks the shards in their order, each shard's jobs in its own order
(so priorities are honoured within a shard, not across shards); its cursor is
the shard it stopped on and that shard's own cursor. A shard that is down stops
the listing with a DriverError naming it (as :meth:`ShardedDriver.find` does
when it cannot rule the shard out): a listing that skipped it silently would
look complete.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kashq.drivers import cursor as cursors
from kashq.drivers.base import JobListing, JobState, ListedJob
from kashq.drivers.redis import RedisDriver
from kashq.drivers.sharded.shard import Shard
from kashq.exceptions import DriverError

OnShard = Callable[[int, Callable[[RedisDriver], Any]], Any]  # ShardedDriver._on


def page(
    shards: Sequence[Shard],
    on: OnShard,
    usable: Callable[[Shard], bool],
    queue: str,
    state: JobState,
    *,
    limit: int,
    cursor: str | None,
    tag: str | None,
) -> JobListing:
    """One page of ``queue``'s jobs in ``state``, from the cursor's shard on."""
    cursors.check_listing(state, limit, tag)
    kind = cursors.listing_kind(state, tag) + "@shards"
    position = cursors.decode(cursor, kind, "is")
    index, inner = (0, None) if position is None else (int(position[0]), str(position[1]) or None)
    if not 0 <= index < len(shards):
        raise ValueError(f"not a cursor of this {kind} listing: {cursor!r}")
    found: list[ListedJob] = []
    for shard in shards[index:]:
        if not usable(shard):
            raise DriverError(f"listing {queue}: shard {shard.name} is down")
        wanted = limit - len(found)
        listing: JobListing = on(
            shard.index,
            lambda d, c=inner, n=wanted: d.list_jobs(  # type: ignore[misc]
                queue, state, limit=n, cursor=c, tag=tag
            ),
        )
        found += listing.jobs
        inner = None
        if listing.cursor is not None:
            return JobListing(found, cursors.encode(kind, (shard.index, listing.cursor)))
        if len(found) == limit:
            more = shard.index + 1 < len(shards)
            return JobListing(found, cursors.encode(kind, (shard.index + 1, "")) if more else None)
    return JobListing(found, None)


def oldest(
    shards: Sequence[Shard], on: OnShard, usable: Callable[[Shard], bool], queues: Sequence[str]
) -> dict[str, float | None]:
    """The earliest of every shard's answer, per queue."""
    oldest: dict[str, float | None] = dict.fromkeys(queues)
    for shard in shards:
        if not usable(shard):
            raise DriverError(f"reading the oldest ready jobs: shard {shard.name} is down")
        for queue, since in on(shard.index, lambda d: d.oldest_ready(queues)).items():
            if since is not None:
                known = oldest[queue]
                oldest[queue] = since if known is None else min(known, since)
    return oldest
