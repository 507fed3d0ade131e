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
    starts,
)


class MemoryHistoryStore:
    """Spans in a dict, bounded like every store (see :mod:`kashq.history.base`)."""

    def __init__(
        self, clock: Clock = SYSTEM_CLOCK, *, keep_s: float = 86_400.0, series_max: int = SERIES_MAX
    ) -> None:
        self._clock = clock
        self._keep_s = keep_s
        self.series_max = series_max
        self._spans: dict[tuple[int, int], dict[tuple[str, str], list[float]]] = {}
        self._lock = threading.Lock()

    @property
    def keep_s(self) -> float:
        return self._keep_s

    def add(self, figures: Sequence[MinuteFigures]) -> None:
        oldest = first_kept(self._clock.time(), self._keep_s)
        with self._lock:
            for (span, start, queue, job_type), numbers in combine(figures, oldest).items():
                series = self._spans.setdefault((span, start), {})
                key = (queue, job_type)
                if key not in series and len(series) >= self.series_max:
                    key = (OTHER, OTHER)
                old = series.get(key)
                series[key] = numbers if old is None else merge(old, numbers)
            for span, start in [k for k in self._spans if k[1] + k[0] <= oldest]:
                del self._spans[(span, start)]

    def read(self, first_minute: int, last_minute: int, span: int = 1) -> list[MinuteFigures]:
        check_window(first_minute, last_minute, span)
        oldest = first_kept(self._clock.time(), self._keep_s)
        with self._lock:
            return [
                MinuteFigures.of(start, queue, job_type, numbers)
                for start in starts(first_minute, last_minute, span)
                if start + span > oldest
                for (queue, job_type), numbers in sorted(self._spans.get((span, start), {}).items())
            ]

    def spans(self) -> int:
        """How many spans are held (the storage bound's test reads it)."""
        with self._lock:
            return len(self._spans)

    def close(self) -> None:
        """Nothing to release."""


def first_kept(now: float, keep_s: float) -> int:
    """The oldest minute a store keeps at ``now``: one that ended less than ``keep_s`` ago;
    a span is kept while it ends after this minute starts."""
    return int((now - keep_s) // 60)
