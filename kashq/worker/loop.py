"""What one consumer thread of a worker carries from one job to the next.

The worker's loop (:meth:`kashq.worker.Worker._consume`) owns one per thread:
the jobs reserved ahead of the running one, the completed jobs to acknowledge
with the next reserve, how long the last job ran (it sizes the next prefetch
batch) and the pause after a failed round. Nothing here is allocated per job.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from kashq.drivers.base import Reservation
from kashq.worker.outcome import Outcome
from kashq.worker.prefetch import PrefetchedJobs

_RECONNECT_MIN_S, _RECONNECT_MAX_S = 0.1, 5.0  # backoff while the driver is unreachable


@dataclasses.dataclass(slots=True)
class ConsumerLoop:
    """What one consumer thread carries from one job to the next (one per thread, not per job)."""

    waiting: PrefetchedJobs  # jobs reserved ahead of the running one
    acks: list[Reservation] = dataclasses.field(default_factory=list)  # sent with the next reserve
    last_s: float | None = None  # how long the last job ran: sizes the next batch
    pause_s: float = 0.0  # the wait after the last failed round (0: the last round went well)

    def running(self) -> float:
        """A job starts now (the prefetch watcher reads when); returns the time."""
        self.waiting.running_since = now = time.monotonic()
        return now

    def ran(self, res: Reservation, outcome: Outcome, started: float) -> None:
        """The job ran to ``outcome``; a completed one is acknowledged with the next reserve."""
        self.waiting.running_since = None
        self.last_s = time.monotonic() - started
        if outcome is Outcome.COMPLETED:
            self.acks.append(res)

    def first_of(self, batch: list[Reservation]) -> Reservation | None:
        """The job of ``batch`` to run now; the others wait behind it."""
        if len(batch) > 1:
            self.waiting.hold(batch[1:])
        return batch[0] if batch else None

    def sent_acks(self) -> None:
        """A reserve acknowledged :attr:`acks`."""
        self.acks.clear()

    def pause(self) -> float:
        """How long to wait after a failed round: doubling from 0.1 s up to 5 s."""
        self.pause_s = min(max(self.pause_s * 2, _RECONNECT_MIN_S), _RECONNECT_MAX_S)
        return self.pause_s


class Quota:
    """``max_jobs`` and ``max_time_s`` (``--max-jobs``, ``--max-time``) shared by a worker's
    threads: each claims a job's place before it reserves, so threads never overshoot."""

    def __init__(self, max_jobs: int | None, max_time_s: float | None) -> None:
        self._max_jobs, self._max_time_s = max_jobs, max_time_s
        self._lock = threading.Lock()
        self._claimed = 0
        self._started_at = time.monotonic()

    def restart(self) -> None:
        """The worker starts (again): nothing claimed, the time limit counted from now."""
        with self._lock:
            self._claimed, self._started_at = 0, time.monotonic()

    def claim(self) -> bool:
        """Take one place; False once either limit is reached."""
        max_time_s = self._max_time_s
        if max_time_s is not None and time.monotonic() - self._started_at >= max_time_s:
            return False
        with self._lock:
            if self._max_jobs is not None and self._claimed >= self._max_jobs:
                return False
            self._claimed += 1
            return True

    def unclaim(self) -> None:
        """Give a place back (no job came)."""
        with self._lock:
            self._claimed -= 1

    def left(self, prefetch: int) -> int:
        """How many more jobs ``max_jobs`` allows beyond those claimed (``prefetch``
        without a limit)."""
        if self._max_jobs is None:
            return prefetch
        with self._lock:
            return max(self._max_jobs - self._claimed, 0)
