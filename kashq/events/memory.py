"""The in-process event store: a list guarded by a condition, for memory/sync drivers and tests.

Positions are a counter (``"1"``, ``"2"`` ...) that never goes back, even
after pruning. ``max_len`` bounds the list like Redis's ``MAXLEN ~``: past it
by a tenth, the oldest events are dropped.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence

from kashq.events.base import (
    DEFAULT_POLL_S,
    DEFAULT_READ_LIMIT,
    Event,
    Subscribing,
    history_order,
    stopped,
)


class MemoryEventStore(Subscribing):
    """Events held in this process's memory (thread-safe)."""

    def __init__(self, *, max_len: int | None = None) -> None:
        self.max_len = max_len
        self._events: list[Event] = []
        self._seqs: list[int] = []  # the events' positions as ints, ascending
        self._next = 1
        self._cond = threading.Condition()

    def append(self, event: Event) -> None:
        self.append_many((event,))

    def append_many(self, events: Sequence[Event]) -> None:
        with self._cond:
            for event in events:
                seq = self._next
                self._next += 1
                self._events.append(dataclasses.replace(event, position=str(seq)))
                self._seqs.append(seq)
            if self.max_len is not None and len(self._events) > self.max_len * 1.1:
                cut = len(self._events) - self.max_len
                del self._events[:cut], self._seqs[:cut]
            self._cond.notify_all()

    def get_job_events(self, job_id: str) -> list[Event]:
        with self._cond:
            found = [e for e in self._events if e.job_id == job_id]
        return history_order(found, _seq)

    def read(self, after: str | None = None, limit: int = DEFAULT_READ_LIMIT) -> list[Event]:
        with self._cond:
            return self._after(after, limit)

    def tail(
        self,
        after: str | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield events as they are appended (after ``after``, or from now on)."""
        with self._cond:
            cursor = after if after is not None else str(self._next - 1)
        while not stopped(stop):
            seen = _seq(cursor)
            with self._cond:
                self._cond.wait_for(lambda s=seen: self._next - 1 > s, timeout=poll_s)  # type: ignore[misc]
                batch = self._after(cursor, DEFAULT_READ_LIMIT)
            for event in batch:
                cursor = event.position or cursor
                yield event

    def prune(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        with self._cond:
            keep = [i for i, e in enumerate(self._events) if e.at >= cutoff]
            removed = len(self._events) - len(keep)
            self._events = [self._events[i] for i in keep]
            self._seqs = [self._seqs[i] for i in keep]
        return removed

    def close(self) -> None:
        """Nothing to release: the events stay for later readers of this store."""

    def __len__(self) -> int:
        return len(self._events)

    def _after(self, after: str | None, limit: int) -> list[Event]:
        start = 0 if after is None else bisect.bisect_right(self._seqs, _seq(after))
        return self._events[start : start + limit]


def _seq(position: str) -> int:
    try:
        return int(position) if position else 0
    except ValueError:
        raise ValueError(f"not a memory event store position: {position!r}") from None


class NullEventStore(Subscribing):
    """A store that keeps nothing: what recording gets when ``KASHQ_EVENTS`` is off."""

    def append(self, event: Event) -> None:
        """Discard ``event``."""

    def append_many(self, events: Sequence[Event]) -> None:
        """Discard ``events``."""

    def get_job_events(self, job_id: str) -> list[Event]:
        return []

    def read(self, after: str | None = None, limit: int = DEFAULT_READ_LIMIT) -> list[Event]:
        return []

    def tail(
        self,
        after: str | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield nothing, waiting until ``stop`` is set."""
        while not stopped(stop):
            if stop is None:
                time.sleep(poll_s)
            else:
                stop.wait(poll_s)
        yield from ()

    def prune(self, older_than_s: float) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""
