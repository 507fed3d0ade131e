"""Adding up a worker's jobs per minute and writing them to the metrics history.

:meth:`HistoryRecorder.listener` (a worker listener) adds each attempt's
start, end and times to an in-memory :class:`~kashq.history.base.Tally`: a
dict update, no I/O. A daemon thread writes the tally every
``flush_interval_s`` seconds in one ``add``. When the store is unreachable the
figures are kept (merged with the next ones, so memory stays bounded by the
series of the minutes that pass) and written when it is back; past
``keep_s`` they would be dropped by the store anyway. Nothing raises into
the worker.
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

_STARTED, _COMPLETED, _RETRIED = EventKind.STARTED, EventKind.COMPLETED, EventKind.RETRIED
_FAILED, _PARKED = EventKind.FAILED, EventKind.PARKED
_LIVE: weakref.WeakSet[HistoryRecorder] = weakref.WeakSet()


class HistoryRecorder:
    """Feeds ``store`` from worker events, a write every ``flush_interval_s`` seconds."""

    def __init__(self, store: HistoryStore, *, flush_interval_s: float = 5.0) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self._tally = Tally()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failing = False

    def listener(self, event: JobEvent) -> None:
        """A worker listener: add ``event`` to this minute's figures (never blocks on I/O)."""
        kind = event.kind
        if kind is _STARTED:
            env = event.envelope
            wait_s = event.at - env.available_at if env is not None else 0.0
            with self._lock:
                self._tally.started(event.at, event.queue, event.job_type, wait_s)
        elif kind is _COMPLETED or kind is _RETRIED:
            outcome = 0 if kind is _COMPLETED else 2
            with self._lock:
                self._tally.finished(
                    event.at, event.queue, event.job_type, outcome, event.duration_s or 0.0
                )
        elif (kind is _FAILED or kind is _PARKED) and not event.recording_again:
            with self._lock:
                self._tally.finished(
                    event.at, event.queue, event.job_type, 1, event.duration_s or 0.0
                )
        else:
            return
        if self._thread is None:
            self._start()

    def flush(self) -> bool:
        """Write what is added up now; False if the store could not take it."""
        with self._lock:
            tally, self._tally = self._tally, Tally()
        if not tally:
            return True
        try:
            self.store.add(tally.figures())
        except KashqError as exc:
            if not self._failing:
                log.warning("metrics history unreachable (%s); figures kept until it is back", exc)
            self._failing = True
            with self._lock:  # put them back under what came meanwhile
                for figures in tally.figures():
                    self._tally.add(figures)
            return False
        if self._failing:
            log.warning("metrics history reachable again")
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
