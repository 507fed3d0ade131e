"""A running job's ``self.progress()`` reports: to the result store, and as PROGRESS events.

Every report goes to the ``sink`` (the event recorder's, which keeps the latest
per job and writes it in batches to the result store, for ``status()``), so
the stored progress is never behind the job's last word, and a report costs
the job no round trip. PROGRESS events (the event log, ``queue:tail``,
listeners) are rate-limited: at most one per job every :data:`MIN_INTERVAL_S`,
and always one that says the work is done (1.0), so a tight loop cannot flood
the event log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kashq.clock import Clock
from kashq.envelope import Envelope
from kashq.jobevents import EventKind
from kashq.worker.events import Listeners

MIN_INTERVAL_S = 0.5
Sink = Callable[[str, float, str, float], None]
"""Takes (job id, fraction, message, Unix time) of every report."""


class ProgressReports:
    """Takes reports from running jobs (through their JobContext) for one worker."""

    def __init__(self, events: Listeners, clock: Clock) -> None:
        self._events = events
        self._clock = clock
        self.sink: Sink | None = None
        self._last: dict[str, float] = {}  # job id -> monotonic time of its last report
        self._lock = threading.Lock()

    def report(self, env: Envelope, fraction: float, message: str) -> None:
        """Job ``env`` is ``fraction`` done: to the sink, and an event unless it reported
        less than 0.5 s ago."""
        if self.sink is not None:
            self.sink(env.id, fraction, message, self._clock.time())
        now = time.monotonic()
        with self._lock:
            last = self._last.get(env.id)
            if last is not None and now - last < MIN_INTERVAL_S and fraction < 1:
                return
            self._last[env.id] = now
        attempt = env.attempts + 1
        self._events.emit(
            EventKind.PROGRESS, None, env, attempt=attempt, progress=fraction, message=message
        )

    def ended(self, job_id: str) -> None:
        """Forget job ``job_id``'s last report time (its attempt ended)."""
        if self._last:  # most jobs never report: no lock, no lookup
            with self._lock:
                self._last.pop(job_id, None)
