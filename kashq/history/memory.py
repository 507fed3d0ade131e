"""The metrics history in this process, for the memory and sync connections (and tests)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.history.base import (
    OTHER,
    SERIES_MAX,
    MinuteFigures,
    check_window,
    combine,
    merge,
)


class MemoryHistoryStore:
    """Minutes in a dict, bounded like every store (see :mod:`kashq.history.base`)."""

    def __init__(
        self, clock: Clock = SYSTEM_CLOCK, *, keep_s: float = 86_400.0, series_max: int = SERIES_MAX
    ) -> None:
        self._clock = clock
        self._keep_s = keep_s
        self.series_max = series_max
        self._minutes: dict[int, dict[tuple[str, str], list[float]]] = {}
        self._lock = threading.Lock()

    @property
    def keep_s(self) -> float:
        return self._keep_s

    def add(self, figures: Sequence[MinuteFigures]) -> None:
        oldest = first_kept(self._clock.time(), self._keep_s)
        with self._lock:
            for (minute, queue, job_type), numbers in combine(figures).items():
                if minute < oldest:
                    continue
                series = self._minutes.setdefault(minute, {})
                key = (queue, job_type)
                if key not in series and len(series) >= self.series_max:
                    key = (OTHER, OTHER)
                old = series.get(key)
                series[key] = numbers if old is None else merge(old, numbers)
            for minute in [m for m in self._minutes if m < oldest]:
                del self._minutes[minute]

    def read(self, first_minute: int, last_minute: int) -> list[MinuteFigures]:
        check_window(first_minute, last_minute)
        first_minute = max(first_minute, first_kept(self._clock.time(), self._keep_s))
        with self._lock:
            return [
                MinuteFigures.of(minute, queue, job_type, numbers)
                for minute in sorted(self._minutes)
                if first_minute <= minute <= last_minute
                for (queue, job_type), numbers in sorted(self._minutes[minute].items())
            ]

    def minutes(self) -> int:
        """How many minutes are held (the storage bound's test reads it)."""
        with self._lock:
            return len(self._minutes)

    def close(self) -> None:
        """Nothing to release."""


def first_kept(now: float, keep_s: float) -> int:
    """The oldest minute a store keeps at ``now``: one that ended less than ``keep_s`` ago."""
    return int((now - keep_s) // 60)
