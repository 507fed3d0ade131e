"""Adding up a worker's jobs per minute and writing them to the metrics history.

:meth:`HistoryRecorder.listener` (a worker listener) adds the end of each
attempt (completed, failed for good, or retried) to a
:class:`~kashq.history.base.Tally` (per minute, queue and job type): a few
additions under an uncontended lock, no I/O, once per attempt. A daemon
thread writes the tally every ``flush_interval_s`` seconds in one ``add``. An
attempt's wait is taken from its end: it started ``duration`` before it
ended, and had been due since its envelope's ``available_at``.

Nothing raises into the worker. When the store is unreachable the recorder
logs once and keeps the figures, added to by the next attempts, for at most
:data:`PENDING_SERIES_MAX` series (the oldest minutes go first beyond that,
counted in ``dropped``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref

from kashq.exceptions import KashqError
from kashq.history.base import HistoryStore, Tally
from kashq.jobevents import EventKind, JobEvent

log = logging.getLogger(__name__)

PENDING_SERIES_MAX = 50_000
"""Series kept back while the store is down (past it, the oldest minutes are dropped)."""
_COMPLETED, _RETRIED = EventKind.COMPLETED, EventKind.RETRIED
_FAILED, _PARKED = EventKind.FAILED, EventKind.PARKED
_LIVE: weakref.WeakSet[HistoryRecorder] = weakref.WeakSet()


class HistoryRecorder:
    """Feeds ``store`` from worker events, a write every ``flush_interval_s`` seconds."""

    def __init__(self, store: HistoryStore, *, flush_interval_s: float = 5.0) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.dropped = 0  # series dropped while the store was down
        self._tally = Tally()
        self._lock = threading.Lock()  # guards _tally
        self._write_lock = threading.Lock()  # one write at a time: the thread, or close()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failing = False

    def listener(self, event: JobEvent) -> None:
        """A worker listener: add the end of an attempt to its minute's figures (no I/O)."""
        kind = event.kind  # identity tests: the cheapest, and most events are none of these
        if kind is _COMPLETED:
            outcome = 0
        elif kind is _RETRIED:
            outcome = 2
        elif (kind is _FAILED or kind is _PARKED) and not event.recording_again:
            outcome = 1
        else:
            return
        at, run_s, env = event.at, event.duration_s or 0.0, event.envelope
        wait_s = None if env is None else at - run_s - env.available_at
        with self._lock:
            self._tally.ended(at, event.queue, event.job_type, outcome, run_s, wait_s=wait_s)
        if self._thread is None:
            self._start()

    def flush(self) -> bool:
        """Write what is added up now; False if the store could not take it."""
        with self._write_lock:
            with self._lock:
                tally, self._tally = self._tally, Tally()
            if not tally:
                return True
            try:
                self.store.add(tally.figures())
            except KashqError as exc:
                if not self._failing:
                    log.warning("metrics history unreachable (%s); figures kept meanwhile", exc)
                self._failing = True
                with self._lock:  # what came meanwhile goes on top of what was kept
                    self._tally = tally.absorb(self._tally)
                    self._trim(self._tally)
                return False
        if self._failing:
            log.warning("metrics history reachable again (%d series dropped)", self.dropped)
        self._failing = False
        return True

    def close(self) -> None:
        """Write what is left (once), stop the thread and close the store."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.flush_interval_s + 5)
        self.flush()
        _LIVE.discard(self)
        self.store.close()

    def _trim(self, tally: Tally) -> None:
        excess = len(tally.series) - PENDING_SERIES_MAX
        if excess > 0:
            for key in sorted(tally.series)[:excess]:  # the oldest minutes first
                del tally.series[key]
            self.dropped += excess

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="kashq-history", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def _run(self) -> None:
        while not self._wake.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:  # a bug here must not end the history for good
                log.exception("metrics history writer failed; going on")


@atexit.register
def _close_all() -> None:
    """Write what live recorders hold before the interpreter ends (their threads are daemons)."""
    for recorder in list(_LIVE):
        recorder.close()
