"""The event store on Redis: one stream per prefix, ``<prefix>:{events}:stream``.

Each event is one stream entry with one field, ``e``: the event's compact
JSON. A batch is one call of ``lua/append.lua``, which runs ``XADD ... MAXLEN ~
max_len`` per event: one command of string arguments costs the writing process
a fraction of what a pipeline of XADDs does (redis-py's per-command work). The
stream stays near ``max_len`` entries (approximate trimming: Redis drops whole
nodes, so it may hold up to about a hundred more). Positions are stream ids.

Per-job history scans the stream backwards and stops a minute of stream time
before the job's ``dispatched`` event: nothing of a job is stored before it was
dispatched, and the stream is bounded, so the worst case (a job dispatched
before events were on, or already trimmed away) reads ``max_len`` entries once.
A per-job index (a list per job with a TTL) would make that lookup cheaper, but
it is bounded by time, not by count: at a thousand jobs a second a week's
index is hundreds of millions of keys. The stream alone stays bounded.

Live reads block in ``XREAD BLOCK``. Pruning is ``XTRIM MINID``: by when the
event was stored (the stream id's time, the Redis server's clock), which is
within one flush (~50 ms) of when it happened. Every call goes through the
Redis driver's retry policy (:mod:`kashq.drivers.redis.retry`: the first call
after a Redis restart succeeds). Redis errors leave this module as
:class:`~kashq.events.base.EventStoreError` (a ``DriverError``), naming the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import redis

from kashq.drivers.redis import retry
from kashq.drivers.redis.client import (
    RedisClientUser,
    execute_packed,
    failure,
    longest_block_s,
)
from kashq.drivers.redis.keys import stream_key
from kashq.drivers.redis.lua import LuaScripts
from kashq.events.base import (
    DEFAULT_POLL_S,
    DEFAULT_READ_LIMIT,
    DISPATCHED,
    Event,
    EventStoreError,
    Subscribing,
    history_order,
    stopped,
)

T = TypeVar("T")
_FIELD = b"e"
_SCAN_CHUNK = 1000
_APPEND_CHUNK = 1000  # events per script call
# How far before a job's dispatched event (in stream time) a history scan still
# looks: covers clock differences between the dispatcher's host and Redis.
_SCAN_MARGIN_MS = 60_000


class RedisEventStore(RedisClientUser, Subscribing):
    """Events in one Redis stream under ``prefix``."""

    def __init__(self, client: Any | str, *, prefix: str = "kashq", max_len: int = 100_000) -> None:
        RedisClientUser.__init__(self, client)
        self.key = stream_key(prefix)
        self.max_len = max_len
        self._lua = LuaScripts("kashq.events", ("append",))
        self._longest_block_s = longest_block_s(self.client)

    def append(self, event: Event) -> None:
        self.append_many((event,))

    def append_many(self, events: Sequence[Event]) -> None:
        self.append_encoded([event.encode() for event in events])

    def append_encoded(self, texts: Sequence[str]) -> None:
        """Store events given as their JSON (:func:`~kashq.events.base.encode_event`)."""
        for start in range(0, len(texts), _APPEND_CHUNK):
            args = [self.max_len, *texts[start : start + _APPEND_CHUNK]]
            command = self._lua.command("append", [self.key], args)
            self._call(lambda c=command: execute_packed(self.client, c))  # type: ignore[misc]

    def read(self, after: str | None = None, limit: int = DEFAULT_READ_LIMIT) -> list[Event]:
        start = "-" if after is None else f"({after}"
        entries = self._call(lambda: self.client.xrange(self.key, min=start, count=limit))
        return [_event(entry_id, fields) for entry_id, fields in entries]

    def get_job_events(self, job_id: str) -> list[Event]:
        needle = job_id.encode()
        found: list[Event] = []
        end, floor_ms = "+", -1
        while True:
            chunk = self._call(
                lambda e=end: self.client.xrevrange(self.key, max=e, min="-", count=_SCAN_CHUNK)  # type: ignore[misc]
            )
            for entry_id, fields in chunk:
                if _millis(entry_id) < floor_ms:
                    return history_order(found, _position_key)
                raw = _raw(fields)
                if needle not in raw:  # cheap test before decoding
                    continue
                event = _event(entry_id, fields)
                if event.job_id != job_id:
                    continue
                found.append(event)
                if event.type == DISPATCHED:
                    floor_ms = int(event.at * 1000) - _SCAN_MARGIN_MS
            if len(chunk) < _SCAN_CHUNK:
                return history_order(found, _position_key)
            end = f"({_text(chunk[-1][0])}"

    def tail(
        self,
        after: str | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield events as they are stored (after ``after``, or from now on), via XREAD BLOCK."""
        cursor = after if after is not None else self._last_id()
        block_ms = max(int(min(poll_s, self._longest_block_s) * 1000), 1)
        while not stopped(stop):
            reply = self._call(
                lambda c=cursor: self.client.xread(  # type: ignore[misc]
                    {self.key: c}, count=DEFAULT_READ_LIMIT, block=block_ms
                )
            )
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    cursor = _text(entry_id)
                    yield _event(entry_id, fields)

    def prune(self, older_than_s: float) -> int:
        min_id = f"{int((time.time() - older_than_s) * 1000)}-0"
        return int(self._call(lambda: self.client.xtrim(self.key, minid=min_id, approximate=False)))

    def length(self) -> int:
        """How many events the stream holds."""
        return int(self._call(lambda: self.client.xlen(self.key)))

    def _last_id(self) -> str:
        newest = self._call(lambda: self.client.xrevrange(self.key, count=1))
        return _text(newest[0][0]) if newest else "0-0"

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return retry.call(fn, reload_scripts=lambda: self._lua.load(self.client))
        except redis.RedisError as exc:
            what = "redis event store"
            raise failure(exc, self.address, what=what, kind=EventStoreError) from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _millis(entry_id: bytes | str) -> int:
    return int(_text(entry_id).partition("-")[0])


def _position_key(position: str) -> tuple[int, int]:
    ms, _, seq = position.partition("-")
    return (int(ms or 0), int(seq or 0))


def _raw(fields: dict[Any, Any]) -> bytes:
    """The entry's event JSON, from a client that decodes replies or one that does not."""
    value = fields.get(_FIELD)
    if value is None:
        value = fields.get(_FIELD.decode(), b"")
    return value.encode() if isinstance(value, str) else bytes(value)


def _event(entry_id: bytes | str, fields: dict[Any, Any]) -> Event:
    return Event.decode(_raw(fields), _text(entry_id))
