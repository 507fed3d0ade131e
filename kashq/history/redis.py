"""The metrics history on Redis: a hash per span, expiring when the span is past its age.

``<prefix>:history:<span>:<minute>`` (a minute, or a quarter of an hour from
``minute``) maps each series (the JSON ``[queue, job type]``) to its figures
(a JSON array, :data:`~kashq.history.base.FIGURES` order). ``lua/add.lua``
merges a write into one span, caps the series it holds and sets the key to
expire ``keep_s`` after the span ends, on the store's clock: nothing has to
sweep old spans, and a span is one key in one Cluster slot. A write, and a
read of a window, is one pipeline (one round trip; one per Cluster node).
Errors leave as :class:`~kashq.history.base.HistoryStoreError` naming the server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.redis.client import ScriptedStore
from kashq.drivers.redis.keys import history_key
from kashq.drivers.redis.lua import LuaScripts
from kashq.history.base import (
    OTHER,
    SERIES_MAX,
    HistoryStoreError,
    MinuteFigures,
    check_window,
    combine,
    starts,
)
from kashq.history.memory import first_kept

_OTHER_FIELD = json.dumps([OTHER, OTHER])


class RedisHistoryStore(ScriptedStore):
    """The metrics history in Redis under ``prefix`` (a URL or a redis-py client)."""

    error = HistoryStoreError

    def __init__(
        self,
        client: Any | str,
        *,
        prefix: str = "kashq",
        clock: Clock = SYSTEM_CLOCK,
        keep_s: float = 86_400.0,
        series_max: int = SERIES_MAX,
    ) -> None:
        ScriptedStore.__init__(self, client)
        self.prefix = prefix
        self._clock = clock
        self._keep_s = keep_s
        self.series_max = series_max
        self._lua = LuaScripts("kashq.history", ("add",))

    @property
    def keep_s(self) -> float:
        return self._keep_s

    def add(self, figures: Sequence[MinuteFigures]) -> None:
        now = self._clock.time()
        by_span: dict[tuple[int, int], list[str]] = {}
        for (span, start, queue, job_type), numbers in combine(
            figures, first_kept(now, self._keep_s)
        ).items():
            by_span.setdefault((span, start), []).extend(
                (json.dumps([queue, job_type]), json.dumps(numbers))
            )
        if not by_span:
            return

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for (span, start), pairs in sorted(by_span.items()):
                ends_at = (start + span) * 60 + self._keep_s
                ttl_ms = max(1, math.ceil((ends_at - now) * 1000))
                args = [ttl_ms, self.series_max, _OTHER_FIELD, *pairs]
                self._lua.run(pipe, "add", [history_key(self.prefix, span, start)], args)
            _raise_first(pipe.execute(raise_on_error=False))

        self._call("writing the metrics history", write)

    def read(self, first_minute: int, last_minute: int, span: int = 1) -> list[MinuteFigures]:
        check_window(first_minute, last_minute, span)
        oldest = first_kept(self._clock.time(), self._keep_s)
        minutes = [m for m in starts(first_minute, last_minute, span) if m + span > oldest]
        if not minutes:
            return []

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for minute in minutes:
                pipe.hgetall(history_key(self.prefix, span, minute))
            return _raise_first(pipe.execute(raise_on_error=False))

        replies = self._call("reading the metrics history", read)
        found: list[MinuteFigures] = []
        for minute, series in zip(minutes, replies, strict=True):
            for field, numbers in sorted(series.items()):
                queue, job_type = json.loads(field)
                found.append(MinuteFigures.of(minute, queue, job_type, json.loads(numbers)))
        return found


def _raise_first(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
