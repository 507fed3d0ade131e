"""Batches on Redis: each under its own id's hash tag, counted by one script per job.

A batch's keys (:class:`~kashq.drivers.redis.keys.BatchKeys`) share the hash
tag ``{<batch id>}``: its record, its jobs' states and their order are one
Redis Cluster slot, so ``lua/count.lua`` counts a job and makes callbacks due
atomically, wherever the job ran: its queue's keys are another slot, and the
count is a call of its own, made before the job's ack. On plain Redis, where
scripts may span hash tags, a worker's completed jobs are counted by its next
reserve instead, in the same script that acknowledges them
(:meth:`~kashq.drivers.redis.driver.RedisDriver.counts_ride`): no extra round trip.

Two indexes under ``{batches}`` list every batch and the open ones (for the sweep); they are
written by separate calls, so a reader skips an index entry whose batch is gone.
A finished batch whose callbacks are all pushed expires after ``keep_s`` by
Redis's own TTL; :meth:`RedisBatchStore.prune` deletes earlier ones. Redis
errors are one-line :class:`~kashq.workflows.batches.base.BatchStoreError` messages.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

from kashq.drivers.redis.client import ScriptedStore, is_cluster
from kashq.drivers.redis.connection import ThreadConnections
from kashq.drivers.redis.keys import BatchKeys, batch_keys, batches_key, open_batches_key
from kashq.drivers.redis.lua import LuaScripts
from kashq.workflows.batches.base import (
    BatchRecord,
    BatchStoreError,
    Callbacks,
    Counted,
    MemberState,
)

KEEP_S = 7 * 86_400.0
"""How long a finished batch stays in Redis by default: a week."""
_CHUNK = 1000  # job ids per command
_INTS = ("total", "done", "failed", "cancelled", "due", "pushed")


class RedisBatchStore(ScriptedStore):
    """Batches in Redis under ``prefix`` (see the module docstring)."""

    error = BatchStoreError

    def __init__(self, client: Any | str, *, prefix: str = "kashq", keep_s: float = KEEP_S) -> None:
        super().__init__(client)
        self.prefix = prefix
        self._keep_ms = max(1, math.ceil(keep_s * 1000))
        self._lua = LuaScripts(
            "kashq.workflows.batches",
            ("add", "cancel", "pushed"),
            {"count": ("count_lib", "count")},
        )
        # Counting runs once per group of a worker's jobs: on plain Redis, on the thread's
        # own connection, as the driver's scripts do (a cluster routes by the client).
        self._connections = None if is_cluster(self.client) else ThreadConnections(self.client)

    def keys(self, batch_id: str) -> BatchKeys:
        return batch_keys(self.prefix, batch_id)

    def create(self, record: BatchRecord, member_ids: list[str]) -> None:
        keys = self.keys(record.id)

        def write() -> None:
            self.client.zadd(batches_key(self.prefix), {record.id: record.created_at})
            self.client.zadd(open_batches_key(self.prefix), {record.id: record.created_at})
            for start in range(0, len(member_ids), _CHUNK):  # jobs first: no record, no batch
                chunk = member_ids[start : start + _CHUNK]
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(keys.jobs, mapping=dict.fromkeys(chunk, ""))
                pipe.rpush(keys.order, *chunk)
                pipe.execute()
            self.client.hset(keys.record, mapping=_fields(record))

        self._call("creating a batch", write)

    def add(self, batch_id: str, member_ids: list[str]) -> BatchRecord:
        keys = self.keys(batch_id)
        try:
            flat = self._call(
                "adding jobs to a batch",
                lambda: self._lua.run(
                    self.client, "add", [keys.record, keys.jobs, keys.order], member_ids
                ),
            )
        except BatchStoreError as exc:
            why = "has finished" if "finished" in str(exc) else "is unknown"
            raise BatchStoreError(f"batch {batch_id} {why}: no jobs can be added") from None
        return _record(batch_id, flat)

    def count(
        self, batch_id: str, job_ids: Sequence[str], state: MemberState, now: float
    ) -> Counted | None:
        keys, ids = self.keys(batch_id), list(dict.fromkeys(job_ids))
        replies = []
        for start in range(0, len(ids), _CHUNK):
            args = [state, repr(now), *ids[start : start + _CHUNK]]
            command = self._lua.command("count", [keys.record, keys.jobs], args)
            send = functools.partial(self._send, command)
            replies.append(self._call("counting batch jobs", send))
        counted = [_counted(batch_id, reply) for reply in replies if reply is not None]
        return _merged(counted)

    def counted_reply(self, batch_id: str, reply: Any) -> Counted | None:
        """What a count of ``batch_id`` that rode with a reserve changed (the driver's
        :class:`~kashq.drivers.base.RidingCounts` reply); None if nothing."""
        return None if reply is None else _counted(batch_id, reply)

    def eventful_reply(self, reply: Any) -> bool:
        return reply is not None and (int(reply[-3]) != 0 or int(reply[-2]) != 0)

    def mark_pushed(self, batch_id: str, callbacks: Callbacks) -> None:
        keys = self.keys(batch_id)
        settled = self._call(
            "marking batch callbacks pushed",
            lambda: self._lua.run(
                self.client,
                "pushed",
                [keys.record, keys.jobs, keys.order],
                [int(callbacks), self._keep_ms],
            ),
        )
        if settled:
            self._call(
                "closing a batch", lambda: self.client.zrem(open_batches_key(self.prefix), batch_id)
            )

    def get(self, batch_id: str) -> BatchRecord | None:
        flat = self._call(
            "reading a batch", lambda: self.client.hgetall(self.keys(batch_id).record)
        )
        return _record(batch_id, flat) if flat else None

    def member_ids(self, batch_id: str, state: MemberState | None = None) -> list[str]:
        keys = self.keys(batch_id)
        if state is None:
            ids = self._call(
                "reading a batch's jobs", lambda: self.client.lrange(keys.order, 0, -1)
            )
            return [_text(job_id) for job_id in ids]
        states = self._call("reading a batch's jobs", lambda: self.client.hgetall(keys.jobs))
        ended = {_text(k) for k, v in states.items() if _text(v) == state}
        order = self._call("reading a batch's jobs", lambda: self.client.lrange(keys.order, 0, -1))
        return [job_id for job_id in map(_text, order) if job_id in ended]

    def cancel(self, batch_id: str, now: float) -> BatchRecord | None:
        record_key = self.keys(batch_id).record
        flat = self._call(
            "cancelling a batch",
            lambda: self._lua.run(self.client, "cancel", [record_key], [repr(now)]),
        )
        return _record(batch_id, flat) if flat else None

    def recent(self, limit: int, before: float | None = None) -> list[BatchRecord]:
        top = f"({before!r}" if before is not None else "+inf"
        ids = self._call(
            "listing batches",
            lambda: self.client.zrevrangebyscore(
                batches_key(self.prefix), top, "-inf", start=0, num=limit
            ),
        )
        return self._records(map(_text, ids))

    def unsettled(self) -> list[BatchRecord]:
        ids = self._call(
            "reading batches", lambda: self.client.zrange(open_batches_key(self.prefix), 0, -1)
        )
        return [r for r in self._records(map(_text, ids)) if r.due != r.pushed]

    def prune(self, finished_before: float) -> int:
        ids = [
            _text(i)
            for i in self._call(
                "listing batches", lambda: self.client.zrange(batches_key(self.prefix), 0, -1)
            )
        ]
        gone = 0
        for batch_id in ids:
            record = self.get(batch_id)
            if record is None or (record.finished_at or math.inf) < finished_before:
                self._call("pruning batches", lambda b=batch_id: self._drop(b))  # type: ignore[misc]
                gone += record is not None
        return gone

    def _send(self, command: list[Any]) -> Any:
        """Run one whole command: on this thread's connection, or through the client."""
        if self._connections is None:
            return self.client.execute_command(*command)
        return self._connections.stream(lambda: iter((command,)))[0]

    def _drop(self, batch_id: str) -> None:
        keys = self.keys(batch_id)
        self.client.delete(keys.record, keys.jobs, keys.order)
        self.client.zrem(batches_key(self.prefix), batch_id)
        self.client.zrem(open_batches_key(self.prefix), batch_id)

    def _records(self, ids: Any) -> list[BatchRecord]:
        ids = list(ids)

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for batch_id in ids:
                pipe.hgetall(self.keys(batch_id).record)
            return list(pipe.execute())

        flats = self._call("reading batches", read) if ids else []
        return [_record(batch_id, flat) for batch_id, flat in zip(ids, flats, strict=True) if flat]

    def close(self) -> None:
        if self._connections is not None:
            self._connections.close()
        super().close()


def _fields(record: BatchRecord) -> dict[str, Any]:
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "id"}
    values["allow_failures"] = int(record.allow_failures)
    for name in ("created_at", "cancelled_at", "finished_at"):
        values[name] = "" if values[name] is None else repr(values[name])
    return values


_COUNTED = ("total", "done", "failed", "cancelled", "due", "pushed", "name", "cancelled_at",
            "finished_at", "created_at", "allow_failures")  # fmt: skip


def _counted(batch_id: str, reply: list[Any]) -> Counted:
    """The reply of ``lua/count.lua`` as a :class:`Counted`."""
    pairs = dict(zip(_COUNTED, map(_text, reply), strict=False))
    pairs["options"] = _text(reply[-1]) or "{}"
    record = _record(batch_id, pairs)
    return Counted(record, Callbacks(int(reply[-3])), bool(int(reply[-2])))


def _merged(counted: list[Counted]) -> Counted | None:
    """What several counts of one batch (chunks of its jobs) changed together."""
    if not counted:
        return None
    due = Callbacks(0)
    for one in counted:
        due |= one.due
    options = next((one.record.options for one in counted if one.due or one.cancelled), "{}")
    record = dataclasses.replace(counted[-1].record, options=options)
    return Counted(record, due, any(one.cancelled for one in counted))


def _record(batch_id: str, flat: Any) -> BatchRecord:
    if isinstance(flat, dict):
        pairs = {_text(k): _text(v) for k, v in flat.items()}
    else:
        pairs = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
    counts = {name: int(pairs.get(name) or 0) for name in _INTS}
    return BatchRecord(
        id=batch_id,
        name=pairs.get("name", ""),
        created_at=float(pairs.get("created_at") or 0.0),
        options=pairs.get("options", "{}"),
        allow_failures=pairs.get("allow_failures") == "1",
        cancelled_at=_time(pairs.get("cancelled_at")),
        finished_at=_time(pairs.get("finished_at")),
        **counts,
    )


def _time(text: str | None) -> float | None:
    return float(text) if text else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
