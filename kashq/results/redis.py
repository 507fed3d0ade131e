"""The result store on Redis: a hash per job, and a one-entry stream that wakes its waiters.

A job's record is the hash ``<prefix>:result:{<id>}``: its outcome fields
(``status``, ``value``, ``error`` ...) and progress fields (``progress``,
``message``, ``progress_at``), ``""`` standing for None (a JSON value is never
empty). ``lua/put.lua`` writes the outcome, sets the TTL and adds an entry to
the done stream ``<prefix>:result:{<id>}:done`` (same hash tag: one Cluster
slot) in one step; ``lua/progress.lua`` writes progress only, one call per
job, a batch pipelined in one round trip. Expiry is Redis's own TTL on both
keys, so :meth:`RedisResultStore.prune` has nothing to do.

Every call goes through the Redis driver's retry policy
(:mod:`kashq.drivers.redis.retry`: the first call after a Redis restart
succeeds). Redis errors leave this module as
:class:`~kashq.results.base.ResultStoreError` (a ``DriverError``), naming the server.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, cast

import redis

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.redis import retry
from kashq.drivers.redis.client import ScriptedStore, longest_block_s
from kashq.drivers.redis.keys import result_done_key, result_key
from kashq.drivers.redis.lua import LuaScripts
from kashq.results.base import Outcome, Progress, ResultStoreError, StoredResult

_PROGRESS_CHUNK = 1000  # script calls per pipeline
# A wait that lost Redis tries again after these pauses (doubling), until its deadline.
_FIRST_PAUSE_S = 0.05
_LONGEST_PAUSE_S = 1.0
# A connection error a fresh connection cannot cure: not worth waiting out.
_FINAL = (redis.AuthenticationError, redis.exceptions.AuthorizationError)


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1 (PEXPIRE rejects 0; BLOCK 0 is forever)."""
    return max(1, math.ceil(seconds * 1000))


class RedisResultStore(ScriptedStore):
    """Job results in Redis under ``prefix``; ``clock`` dates the records (``expires_at``).

    ``client`` is a URL (see :func:`~kashq.drivers.redis.client.connect`) or a
    redis-py client (``redis.Redis`` or ``RedisCluster``).
    """

    error = ResultStoreError

    def __init__(
        self, client: Any | str, *, prefix: str = "kashq", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(client)
        self.prefix = prefix
        self._clock = clock
        self._lua = LuaScripts("kashq.results", ("put", "progress"))
        self._longest_block_s = longest_block_s(self.client)

    def put(self, result: StoredResult, ttl_s: float) -> None:
        if result.status is None:
            raise ValueError("put stores an outcome: result.status must be set")
        keys = [result_key(self.prefix, result.job_id), result_done_key(self.prefix, result.job_id)]
        args = [_ms(ttl_s), result.status, *_outcome_fields(result, self._clock.time() + ttl_s)]
        self._call("storing a result", lambda: self._lua.run(self.client, "put", keys, args))

    def put_progress(self, updates: Sequence[Progress], ttl_s: float) -> None:
        expires_at = repr(self._clock.time() + ttl_s)
        for start in range(0, len(updates), _PROGRESS_CHUNK):
            chunk = updates[start : start + _PROGRESS_CHUNK]
            calls = [
                (
                    [result_key(self.prefix, u.job_id)],
                    [repr(float(u.fraction)), u.message, repr(float(u.at)), _ms(ttl_s), expires_at],
                )
                for u in chunk
            ]
            self._call("storing progress", lambda c=calls: self._pipelined("progress", c))  # type: ignore[misc]

    def get(self, job_id: str) -> StoredResult | None:
        return self._call("reading a result", lambda: self._read(job_id))

    def wait(self, job_id: str, timeout_s: float) -> StoredResult | None:
        """Block on the job's done stream (``XREAD BLOCK``) until it has an outcome, or None.

        Each XREAD blocks less than the client's reply timeout, so the deadline
        is checked between slices. The first read fails at once, as any call;
        after it, a lost Redis (a restart) is tried again until the deadline.
        If the last try before the deadline failed, :class:`ResultStoreError`:
        unlike None, it does not claim the job has no outcome. A hung server
        holds the caller past the deadline by the client's reply (or connect)
        timeout at most.
        """
        deadline = time.monotonic() + timeout_s
        done = result_done_key(self.prefix, job_id)
        found = self.get(job_id)
        lost: redis.RedisError | None = None
        pause_s = _FIRST_PAUSE_S
        seen = "0-0"  # read on from the last entry: a stream without its record must not spin
        while found is None or found.status is None:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                if lost is not None:
                    raise self._failure("waiting for a result", lost) from lost
                return None
            block_ms = _ms(min(left_s, self._longest_block_s))
            try:
                reply = retry.call(
                    lambda b=block_ms, after=seen: self.client.xread(
                        {done: after}, count=1, block=b
                    )  # type: ignore[misc]
                )
                seen = _last_entry(reply, seen)
                found = retry.call(lambda: self._read(job_id))
                lost, pause_s = None, _FIRST_PAUSE_S
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if isinstance(exc, _FINAL):
                    raise self._failure("waiting for a result", exc) from exc
                lost = exc
                time.sleep(max(min(pause_s, deadline - time.monotonic()), 0))
                pause_s = min(pause_s * 2, _LONGEST_PAUSE_S)
            except redis.RedisError as exc:
                raise self._failure("waiting for a result", exc) from exc
        return found

    def prune(self) -> int:
        """Nothing to do: Redis deletes expired records (hash and done stream) itself; 0."""
        return 0

    def _read(self, job_id: str) -> StoredResult | None:
        return _record(job_id, self.client.hgetall(result_key(self.prefix, job_id)))

    def _pipelined(self, name: str, calls: list[tuple[list[str], list[Any]]]) -> None:
        """Run script ``name`` once per (keys, args) in one round trip (one per Cluster node)."""
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            self._lua.run(pipe, name, keys, args)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception):
                raise reply


def _outcome_fields(result: StoredResult, expires_at: float) -> list[str]:
    """The outcome as hash field, value pairs (None as ``""``)."""
    return [
        "status", result.status or "",
        "job_type", result.job_type,
        "queue", result.queue,
        "value", result.value or "",
        "error", result.error,
        "reason", result.reason,
        "attempts", str(int(result.attempts)),
        "finished_at", _number(result.finished_at),
        "expires_at", repr(float(expires_at)),
    ]  # fmt: skip


def _record(job_id: str, fields: dict[Any, Any]) -> StoredResult | None:
    if not fields:
        return None
    data = {_text(name): _text(value) for name, value in fields.items()}
    return StoredResult(
        job_id=job_id,
        status=cast(Outcome, data.get("status")) or None,
        job_type=data.get("job_type", ""),
        queue=data.get("queue", ""),
        value=data.get("value") or None,
        error=data.get("error", ""),
        reason=data.get("reason", ""),
        attempts=int(data.get("attempts") or 0),
        finished_at=_float(data.get("finished_at")),
        progress=_float(data.get("progress")),
        message=data.get("message", ""),
        progress_at=_float(data.get("progress_at")),
        expires_at=_float(data.get("expires_at")) or 0.0,
    )


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _float(text: str | None) -> float | None:
    return float(text) if text else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _last_entry(reply: Any, seen: str) -> str:
    """The id of the entry an ``XREAD`` of one stream returned, or ``seen`` if none."""
    try:
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        entry_id = entries[-1][0]
    except (TypeError, IndexError, KeyError, StopIteration):
        return seen
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
