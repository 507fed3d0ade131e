"""The ends of jobs on their way to a store of recent jobs, for the event recorder's thread.

:class:`RecentWriter` turns a worker's COMPLETED, CANCELLED and EXPIRED events
(and waiting jobs cancelled by hand) into :class:`~kashq.recent.base.RecentJob`
records and lists them with one ``add`` per batch. It never raises: when the
store is unreachable it logs once, tries the waiting records again after a
growing pause, and drops them after ``TRIES`` failed writes (or at close),
counting them (``dropped``); at most ``max_waiting`` records ever wait.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

from kashq.envelope import Envelope
from kashq.exceptions import KashqError
from kashq.jobevents import EventKind, JobEvent
from kashq.recent.base import Ended, RecentJob, RecentStore

log = logging.getLogger(__name__)

TRIES = 3
"""Writes of waiting records that fail before they are dropped."""
NOT_STARTED = "cancelled before it started"
_ENDED: dict[EventKind, Ended] = {
    EventKind.COMPLETED: "completed",
    EventKind.CANCELLED: "cancelled",
    EventKind.EXPIRED: "expired",
}
_FIRST_PAUSE_S, _LONGEST_PAUSE_S = 0.1, 5.0


class RecentWriter:
    """Records for ``store``, written ``batch_size`` per ``add`` by one thread."""

    def __init__(self, store: RecentStore, *, batch_size: int, max_waiting: int) -> None:
        self.store = store
        self.batch_size = batch_size
        self.max_waiting = max_waiting
        self.dropped = 0
        self.failing = False
        self._waiting: list[RecentJob] = []
        self._cancelled: deque[RecentJob] = deque()  # appended by any thread
        self._tries = 0
        self._pause_s = 0.0
        self._retry_at = 0.0
        self._reported = 0

    def take(self, event: JobEvent) -> None:
        """Keep the end of a job ``event`` tells of (the writer's thread only)."""
        outcome = _ENDED.get(event.kind)
        env = event.envelope
        if outcome is None or env is None:  # not an end, or a job that could not be decoded
            return
        # Positional: a frozen dataclass builds faster so, and this runs for every job.
        job = RecentJob(env.id, event.queue, outcome, event.job_type, event.at, event.attempt,
                        event.duration_s, env.tags, event.error or "")  # fmt: skip
        self._waiting.append(job)

    def cancelled(self, envelopes: Iterable[Envelope], at: float) -> None:
        """Keep waiting jobs cancelled by hand at ``at`` (any thread)."""
        for env in envelopes:
            self._cancelled.append(
                RecentJob(
                    job_id=env.id,
                    queue=env.queue,
                    outcome="cancelled",
                    job_type=env.type,
                    finished_at=at,
                    attempts=env.attempts,
                    tags=env.tags,
                    error=NOT_STARTED,
                )
            )

    def write(self, *, force: bool = False, final: bool = False) -> None:
        """List what waits, a batch per ``add``; while failing, only once the pause is over
        (or ``force``). ``final``: one try, then whatever is left is dropped."""
        waiting, cancelled = self._waiting, self._cancelled
        while cancelled:
            waiting.append(cancelled.popleft())
        excess = len(waiting) - self.max_waiting
        if excess > 0:  # the store is failing: keep the newest
            del waiting[:excess]
            self.dropped += excess
        if not waiting or (self.failing and not force and time.monotonic() < self._retry_at):
            return
        while waiting:
            batch = waiting[: self.batch_size]
            try:
                self.store.add(batch)
            except KashqError as exc:  # unreachable: tried again after a pause, a few times
                self._failed(exc, final)
                return
            except Exception:  # a bug, not an outage: retrying would never end
                log.exception("recent jobs' store rejected %d records; dropping them", len(batch))
                self.dropped += len(batch)
            del waiting[: len(batch)]
        if self.failing:
            lost = self.dropped - self._reported
            log.warning(
                "recent jobs' store reachable again; %d records were dropped meanwhile", lost
            )
        self._reported = self.dropped
        self.failing, self._tries, self._pause_s = False, 0, 0.0

    def _failed(self, exc: Exception, final: bool) -> None:
        if not self.failing:
            log.warning(
                "recent jobs' store unreachable (%s); records are tried %d times, then dropped",
                exc,
                TRIES,
            )
        self.failing = True
        self._tries += 1
        if final or self._tries >= TRIES:
            if final:
                log.error(
                    "recent jobs' store unreachable at close: %d records not listed",
                    len(self._waiting),
                )
            self.dropped += len(self._waiting)
            self._waiting.clear()
            self._tries = 0
        self._pause_s = min(max(self._pause_s * 2, _FIRST_PAUSE_S), _LONGEST_PAUSE_S)
        self._retry_at = time.monotonic() + self._pause_s
