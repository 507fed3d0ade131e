"""Recent jobs on Redis: a sorted set and a hash per queue and outcome, trimmed as they are written.

A list is the ZSET ``<prefix>:{<queue>}:recent:<outcome>`` (score
``finished_at``, member job id) beside the HASH ``...:records`` (job id → the
record's JSON), under the queue's hash tag, so one script handles both in one
Cluster slot. ``lua/add.lua`` lists a batch of one list's records and trims
that list in the same step: ``ZREMRANGEBYSCORE`` drops what is past its age,
``ZREMRANGEBYRANK`` the oldest beyond ``keep_max`` (their records go from the
hash too), and both keys expire ``keep_s`` (plus a minute of slack for clocks)
after the list's last write, so a queue that falls silent leaves nothing
behind. ``lua/queues.lua`` keeps ``<prefix>:recent:{queues}``, the queues
holding records (score: the newest finished_at listed), for :meth:`queues`
and :meth:`prune`. A batch is one pipeline: one round trip (one per Cluster
node). ``lua/page.lua`` reads a page and its records at once.

Every call goes through the Redis driver's retry policy (every script can
be run twice); Redis errors leave as
:class:`~kashq.recent.base.RecentStoreError` (a ``DriverError``) naming the server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, cast

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.redis.client import ScriptedStore
from kashq.drivers.redis.keys import RecentKeys, recent_keys, recent_queues_key
from kashq.drivers.redis.lua import LuaScripts
from kashq.recent.base import (
    ENDED,
    Bounds,
    Ended,
    RecentJob,
    RecentStoreError,
    check_page,
    decode_cursor,
    encode_cursor,
)

_CHUNK = 1000  # records per script call
_SLACK_MS = 60_000  # keys outlive keep_s by this much: clocks of hosts differ a little


class RedisRecentStore(ScriptedStore, Bounds):
    """Recently ended jobs in Redis under ``prefix``, aged on ``clock`` (the driver's).

    ``client`` is a URL (see :func:`~kashq.drivers.redis.client.connect`) or a
    redis-py client (``redis.Redis`` or ``RedisCluster``).
    """

    error = RecentStoreError

    def __init__(
        self,
        client: Any | str,
        *,
        prefix: str = "kashq",
        clock: Clock = SYSTEM_CLOCK,
        keep_s: float = 3600.0,
        keep_max: int = 10_000,
    ) -> None:
        Bounds.__init__(self, clock, keep_s, keep_max)
        ScriptedStore.__init__(self, client)
        self.prefix = prefix
        self._lua = LuaScripts("kashq.recent", ("add", "page", "queues"))

    def add(self, jobs: Sequence[RecentJob]) -> None:
        if not self._keeps(jobs):
            return
        cutoff = self._cutoff()
        lists: dict[tuple[str, str], list[RecentJob]] = {}
        newest: dict[str, float] = {}
        for job in jobs:
            if job.outcome not in ENDED or "\0" in job.job_id:
                raise ValueError(f"outcome must be one of {', '.join(ENDED)}, no NUL: {job!r}")
            if job.finished_at > cutoff:  # else already past its age
                lists.setdefault((job.queue, job.outcome), []).append(job)
                newest[job.queue] = max(newest.get(job.queue, -math.inf), job.finished_at)
        if not lists:
            return
        head, calls = [repr(cutoff), self._keep_max, self._ttl_ms()], []
        for (queue, outcome), listed in lists.items():
            keys = self._keys(queue, outcome)
            for start in range(0, len(listed), _CHUNK):
                args = [*head, _blob(listed[start : start + _CHUNK])]
                calls.append(("add", [keys.ids, keys.records], args))
        noted = [part for queue, at in newest.items() for part in (repr(at), queue)]
        calls.append(("queues", [self._queues_key], [repr(cutoff), self._ttl_ms(), *noted]))
        self._call("listing recent jobs", lambda: self._pipelined(calls))

    def page(
        self, queue: str, outcome: Ended, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[RecentJob], str | None]:
        check_page(outcome, limit)
        at, after = "", ""
        if cursor is not None:
            finished_at, after = decode_cursor(cursor)
            at = repr(finished_at)
        keys = self._keys(queue, outcome)
        args = [repr(self._cutoff()), limit + 1, at, after]  # one more: is there a next page?
        flat = self._call(
            "reading recent jobs",
            lambda: self._lua.run(self.client, "page", [keys.ids, keys.records], args),
        )
        page = [
            _record(queue, outcome, _text(flat[i]), float(flat[i + 1]), _text(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]
        if len(page) > limit:
            return page[:limit], encode_cursor(page[limit - 1])
        return page, None

    def count(self, queue: str, outcome: Ended) -> int:
        check_page(outcome, 1)
        ids = self._keys(queue, outcome).ids
        found = self._call(
            "counting recent jobs", lambda: self.client.zcount(ids, f"({self._cutoff()!r}", "+inf")
        )
        return int(found)

    def queues(self) -> list[str]:
        low = f"({self._cutoff()!r}"
        found = self._call(
            "listing queues of recent jobs",
            lambda: self.client.zrangebyscore(self._queues_key, low, "+inf"),
        )
        return sorted(_text(name) for name in found)

    def prune(self) -> int:
        """Trim every list the queue registry names now; returns how many records went."""
        cutoff = repr(self._cutoff())
        names = self._call(
            "listing queues of recent jobs", lambda: self.client.zrange(self._queues_key, 0, -1)
        )
        head = [cutoff, self._keep_max, self._ttl_ms(), ""]
        calls = [
            ("add", [keys.ids, keys.records], head)
            for keys in (self._keys(_text(name), outcome) for name in names for outcome in ENDED)
        ]
        calls.append(("queues", [self._queues_key], [cutoff, self._ttl_ms()]))
        replies = self._call("pruning recent jobs", lambda: self._pipelined(calls))
        return sum(int(gone) for gone in replies[:-1])

    @property
    def _queues_key(self) -> str:
        return recent_queues_key(self.prefix)

    def _keys(self, queue: str, outcome: str) -> RecentKeys:
        return recent_keys(self.prefix, queue, outcome)

    def _ttl_ms(self) -> int:
        return max(1, math.ceil(self._keep_s * 1000)) + _SLACK_MS

    def _pipelined(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run each (script, keys, args) in one round trip (one per Cluster node)."""
        pipe = self.client.pipeline(transaction=False)
        for name, keys, args in calls:
            self._lua.run(pipe, name, keys, args)
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return cast(list[Any], replies)


def _blob(jobs: Sequence[RecentJob]) -> str:
    """finished_at, job id and record JSON of each job, NUL-separated (``add.lua``'s ARGV[4]).

    One argument for a batch rather than three per job: the client encodes each
    argument on its own, and that cost most of a batch's time.
    """
    parts: list[str] = []
    for job in jobs:
        parts += (repr(float(job.finished_at)), job.job_id, _encode(job))
    return "\0".join(parts)


def _encode(job: RecentJob) -> str:
    """What the hash keeps of a record (the key and the score hold the rest), defaults left
    out. Spelled out rather than ``json.dumps``: several times faster, for every job."""
    text = f'{{"job_type":{_json_name(job.job_type)},"attempts":{int(job.attempts)}'
    if job.duration_s is not None and math.isfinite(job.duration_s):
        text += f',"duration_s":{float(job.duration_s)!r}'
    if job.tags:
        text += f',"tags":{json.dumps(list(job.tags), ensure_ascii=False)}'
    if job.error:
        text += f',"error":{json.dumps(job.error, ensure_ascii=False)}'
    return text + "}"


_NAMES: dict[str, str] = {}
_NAMES_MAX = 1000


def _json_name(name: str) -> str:
    """``name`` as a JSON string; job types repeat from job to job, so remembered."""
    text = _NAMES.get(name)
    if text is None:
        text = json.dumps(name, ensure_ascii=False)
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[name] = text
    return text


def _record(queue: str, outcome: Ended, job_id: str, finished_at: float, text: str) -> RecentJob:
    fields = json.loads(text)
    return RecentJob(
        job_id=job_id,
        queue=queue,
        outcome=outcome,
        job_type=fields.get("job_type", ""),
        finished_at=finished_at,
        attempts=int(fields.get("attempts", 0)),
        duration_s=fields.get("duration_s"),
        tags=tuple(fields.get("tags", ())),
        error=fields.get("error", ""),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
