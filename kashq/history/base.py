"""Metrics history: what each queue and job type did, minute by minute, kept for a while.

Workers add up their jobs per minute, queue and job type (a :class:`Tally`)
and a store keeps one :class:`MinuteFigures` per (minute, queue, job type)
for ``keep_s`` seconds. That is what the dashboard's charts read, so they
need no Prometheus, and history outlives the processes that wrote it.

Every write goes to two resolutions (:data:`SPANS`): the minute, and the
quarter of an hour that holds it, so a day's chart reads 96 quarters rather
than 1,440 minutes. A figure's ``minute`` is the first minute of its span.

The storage is bounded, and every store enforces both bounds when it writes:
a span that ended more than ``keep_s`` ago goes (Redis: its key expires; a
table: its rows are deleted), and one span holds at most ``series_max``
series; jobs of any further (queue, job type) pair are added to the series
``(other)`` / ``(other)``. So a store holds at most
``(keep_s / 60 + keep_s / 900 + 4) * (series_max + 1)`` series, each a fixed
set of numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from kashq.exceptions import DriverError

OTHER = "(other)"
"""The queue and job type of the series that takes jobs beyond ``series_max`` in a minute."""
SERIES_MAX = 500
"""The default for the most series one minute keeps."""
READ_MINUTES_MAX = 7 * 24 * 60
"""The widest window one read covers (a week of minutes)."""
SPANS = (1, 15)
"""The resolutions every write goes to, in minutes: the minute and its quarter of an hour."""


class HistoryStoreError(DriverError):
    """The metrics history could not be read or written (its backend failed)."""


@dataclass(frozen=True, slots=True)
class MinuteFigures:
    """One queue's jobs of one type in one minute (``minute``: Unix seconds // 60).

    ``done`` jobs completed, ``failed`` failed for good, ``retried`` attempts
    failed and retried; ``runs`` attempts that ended, ``run_ms`` their total
    run time and ``run_max_ms`` the longest; ``waits`` attempts whose wait is
    known, ``wait_ms`` how long they had been due when they started, in total,
    and ``wait_max_ms`` the longest. An attempt counts in the minute it ended.
    """

    minute: int
    queue: str
    job_type: str
    done: int = 0
    failed: int = 0
    retried: int = 0
    runs: int = 0
    run_ms: float = 0.0
    run_max_ms: float = 0.0
    waits: int = 0
    wait_ms: float = 0.0
    wait_max_ms: float = 0.0

    def numbers(self) -> list[float]:
        """The figures in :data:`FIGURES` order."""
        return [getattr(self, name) for name in FIGURES]

    @classmethod
    def of(cls, minute: int, queue: str, job_type: str, numbers: Sequence[float]) -> MinuteFigures:
        """The figures of ``numbers`` (in :data:`FIGURES` order; missing ones are 0)."""
        n = [*numbers[:9], *([0] * (9 - len(numbers)))]
        return cls(
            minute, queue, job_type, int(n[0]), int(n[1]), int(n[2]), int(n[3]), float(n[4]),
            float(n[5]), int(n[6]), float(n[7]), float(n[8]),
        )  # fmt: skip


FIGURES: tuple[str, ...] = tuple(f.name for f in fields(MinuteFigures))[3:]
"""The figures of a series, in the order every store keeps them."""
MAXED = frozenset(("run_max_ms", "wait_max_ms"))
"""Figures merged by taking the larger one; the others add up."""


def merge(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Two series' numbers (:data:`FIGURES` order) as one: the maxima (5 and 8) by max."""
    return [
        a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4], max(a[5], b[5]),
        a[6] + b[6], a[7] + b[7], max(a[8], b[8]),
    ]  # fmt: skip


class Tally:
    """A worker's figures not yet written, added up in memory per (minute, queue, job type)."""

    def __init__(self) -> None:
        self.series: dict[tuple[int, str, str], list[float]] = {}

    def __bool__(self) -> bool:
        return bool(self.series)

    def _numbers(self, at: float, queue: str, job_type: str) -> list[float]:
        key = (int(at // 60), queue, job_type)
        numbers = self.series.get(key)
        if numbers is None:
            numbers = self.series[key] = [0, 0, 0, 0, 0.0, 0.0, 0, 0.0, 0.0]
        return numbers

    def ended(
        self, at: float, queue: str, job_type: str, outcome: int, run_s: float, *,
        wait_s: float | None,
    ) -> None:  # fmt: skip
        """An attempt ended at ``at``: ``outcome`` is 0 (done), 1 (failed) or 2 (retried);
        it ran ``run_s`` and had waited ``wait_s`` (None: unknown) before it started."""
        n = self._numbers(at, queue, job_type)
        n[outcome] += 1
        run_ms = max(run_s, 0.0) * 1000
        n[3] += 1
        n[4] += run_ms
        n[5] = max(n[5], run_ms)
        if wait_s is not None:
            wait_ms = max(wait_s, 0.0) * 1000
            n[6] += 1
            n[7] += wait_ms
            n[8] = max(n[8], wait_ms)

    def absorb(self, newer: Tally) -> Tally:
        """This tally with ``newer``'s figures added in; returns itself."""
        for key, numbers in newer.series.items():
            old = self.series.get(key)
            self.series[key] = numbers if old is None else merge(old, numbers)
        return self

    def figures(self) -> list[MinuteFigures]:
        return [MinuteFigures.of(m, q, t, n) for (m, q, t), n in self.series.items()]


class HistoryStore(Protocol):
    """Where the metrics history of one connection is kept."""

    @property
    def keep_s(self) -> float:
        """Seconds a minute is kept."""
        ...

    def add(self, figures: Sequence[MinuteFigures]) -> None:
        """Add ``figures`` (one minute each) to their minutes and quarters, and drop spans
        past their age."""
        ...

    def read(self, first_minute: int, last_minute: int, span: int = 1) -> list[MinuteFigures]:
        """Every series of the spans of ``span`` minutes (one of :data:`SPANS`) that start
        from ``first_minute`` to ``last_minute``, in order."""
        ...

    def close(self) -> None:
        """Release what the store opened."""
        ...


def check_window(first_minute: int, last_minute: int, span: int = 1) -> None:
    """ValueError, one line, unless the window is a usable read."""
    if span not in SPANS:
        raise ValueError(f"span must be one of {SPANS} minutes, got {span!r}")
    if last_minute < first_minute:
        raise ValueError(f"the window ends before it starts: {first_minute}..{last_minute}")
    if last_minute - first_minute >= READ_MINUTES_MAX:
        raise ValueError(f"a read covers at most {READ_MINUTES_MAX} minutes")


def combine(
    figures: Iterable[MinuteFigures], oldest: int = 0
) -> dict[tuple[int, int, str, str], list[float]]:
    """Figures merged per (span, first minute of the span, queue, job type), each figure
    in every span of :data:`SPANS`; spans that end before minute ``oldest`` are left out."""
    merged: dict[tuple[int, int, str, str], list[float]] = {}
    for f in figures:
        numbers = f.numbers()
        for span in SPANS:
            start = f.minute - f.minute % span
            if start + span <= oldest:
                continue
            key = (span, start, f.queue, f.job_type)
            old = merged.get(key)
            merged[key] = numbers if old is None else merge(old, numbers)
    return merged


def starts(first_minute: int, last_minute: int, span: int) -> range:
    """The first minutes of the spans of ``span`` minutes that start in the window."""
    return range(first_minute + (-first_minute) % span, last_minute + 1, span)
