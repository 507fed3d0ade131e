"""Recent jobs in this process's memory: a sorted deque per queue and outcome.

For the memory and sync drivers and for tests. Each list is a deque in
ascending ``(finished_at, job_id)`` order, so the newest records sit at its
right end, where they are appended (a record that finished earlier than the
newest is inserted in its place), and the oldest at its left end, where both
bounds trim. :meth:`MemoryRecentStore.add` trims every list it touched, and
sweeps the others of records past their age at most once a second of the
store's clock, so memory never holds more than ``keep_max`` records per list,
nor records much older than ``keep_s``.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import deque
from collections.abc import Sequence

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.recent.base import (
    ENDED,
    Bounds,
    Ended,
    RecentJob,
    check_page,
    decode_cursor,
    encode_cursor,
    position,
)

_SWEEP_EVERY_S = 1.0


def _finished_at(job: RecentJob) -> float:
    return job.finished_at


class _List:
    """The records of one queue and outcome, oldest first, and each by job id."""

    __slots__ = ("by_id", "records")

    def __init__(self) -> None:
        self.records: deque[RecentJob] = deque()
        self.by_id: dict[str, RecentJob] = {}

    def put(self, job: RecentJob) -> None:
        records = self.records
        earlier = self.by_id.pop(job.job_id, None)
        if earlier is not None:  # the job ended again: its new record replaces the old
            records.remove(earlier)
        if not records or position(records[-1]) <= position(job):
            records.append(job)
        else:
            bisect.insort(records, job, key=position)
        self.by_id[job.job_id] = job

    def trim(self, cutoff: float, keep_max: int) -> int:
        """Drop the oldest records beyond ``keep_max`` and those finished at ``cutoff`` or
        before; returns how many."""
        records, gone = self.records, 0
        while records and (len(records) > keep_max or records[0].finished_at <= cutoff):
            del self.by_id[records.popleft().job_id]
            gone += 1
        return gone

    def live(self, cutoff: float) -> int:
        """How many records finished after ``cutoff``."""
        return len(self.records) - bisect.bisect_right(self.records, cutoff, key=_finished_at)


class MemoryRecentStore(Bounds):
    """Recently ended jobs held in this process's memory (thread-safe)."""

    def __init__(
        self, clock: Clock = SYSTEM_CLOCK, *, keep_s: float = 3600.0, keep_max: int = 10_000
    ) -> None:
        super().__init__(clock, keep_s, keep_max)
        self._lists: dict[tuple[str, str], _List] = {}
        self._lock = threading.Lock()
        self._swept_at = float("-inf")

    def add(self, jobs: Sequence[RecentJob]) -> None:
        if not self._keeps(jobs):
            return
        with self._lock:
            now = self._clock.time()
            cutoff = now - self._keep_s
            touched: dict[tuple[str, str], _List] = {}
            for job in jobs:
                if job.outcome not in ENDED:
                    raise ValueError(f"outcome must be one of {', '.join(ENDED)}: {job!r}")
                if job.finished_at <= cutoff:
                    continue  # already past its age
                key = (job.queue, job.outcome)
                records = touched.get(key) or self._lists.setdefault(key, _List())
                records.put(job)
                touched[key] = records
            for records in touched.values():
                records.trim(cutoff, self._keep_max)
            if now - self._swept_at >= _SWEEP_EVERY_S:
                self._sweep(now)

    def page(
        self, queue: str, outcome: Ended, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[RecentJob], str | None]:
        check_page(outcome, limit)
        after = None if cursor is None else decode_cursor(cursor)
        with self._lock:
            cutoff = self._cutoff()
            found = self._lists.get((queue, outcome))
            if found is None:
                return [], None
            records, pos = found.records, position
            end = len(records) if after is None else bisect.bisect_left(records, after, key=pos)
            page: list[RecentJob] = []
            for job in itertools.islice(reversed(records), len(records) - end, None):
                if job.finished_at <= cutoff:
                    break
                if len(page) == limit:
                    return page, encode_cursor(page[-1])
                page.append(job)
            return page, None

    def count(self, queue: str, outcome: Ended) -> int:
        with self._lock:
            found = self._lists.get((queue, outcome))
            return 0 if found is None else found.live(self._cutoff())

    def queues(self) -> list[str]:
        with self._lock:
            cutoff = self._cutoff()
            return sorted({queue for (queue, _), r in self._lists.items() if r.live(cutoff)})

    def prune(self) -> int:
        with self._lock:
            return self._sweep(self._clock.time())

    def close(self) -> None:
        """Nothing to release: the records stay for later readers of this store."""

    def held(self) -> int:
        """How many records memory holds, those past their age not yet dropped included."""
        with self._lock:
            return sum(len(r.records) for r in self._lists.values())

    def _sweep(self, now: float) -> int:
        self._swept_at = now
        cutoff, gone = now - self._keep_s, 0
        for key, records in list(self._lists.items()):
            gone += records.trim(cutoff, self._keep_max)
            if not records.records:
                del self._lists[key]
        return gone
