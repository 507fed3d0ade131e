"""The hot path: turning worker and dispatcher steps into stored events without slowing them.

:meth:`EventRecorder.listener` (a worker listener) and :meth:`~EventRecorder.dispatched`
only append a reference to an in-memory deque: no round trip, no lock, no
allocation beyond the deque slot. A background thread maps what it finds to
:class:`~kashq.events.base.Event` objects and writes them in batches (one
``append_many`` per ``batch_size`` events, at least every ``flush_interval_s``).
For a store that keeps JSON text (Redis) it skips the Event objects and
encodes each step straight to that text (:func:`~kashq.events.base.encode_event`).

Nothing raises into the worker. When the store is unreachable the recorder
logs one warning, keeps the events, retries with a growing pause (up to 5 s)
and logs once more when the store is back. It buffers at most
``max_buffered`` events: beyond that it drops the *oldest* ones and counts
them (``dropped``), logging the count when the store is back or at close.
:meth:`close` writes everything still buffered; if the store is down then, the
remaining events are dropped and their number logged.

Progress reports (PROGRESS events) also go, the latest per job, to the
connection's result store given as ``results``, where ``status()`` reads
them; that works with the event log off too.

The ends of jobs (COMPLETED, CANCELLED and EXPIRED steps, and waiting jobs
cancelled by hand) also go to the store of recent jobs given as ``recent``
(:mod:`kashq.recent`), one ``add`` per batch beside the events, with the event
log off too (the listener then buffers those steps only), unless the store
keeps nothing (``keep_s`` 0). If that store fails, the records are tried
again a few times with a growing pause, then dropped and counted
(:class:`~kashq.recent.writer.RecentWriter`); at most ``max_buffered`` wait.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.envelope import Envelope
from kashq.events import base
from kashq.events.base import Event, EventStore, TextEventStore
from kashq.events.memory import NullEventStore
from kashq.exceptions import KashqError
from kashq.jobevents import EventKind, JobEvent
from kashq.recent.base import RecentStore
from kashq.recent.writer import RecentWriter
from kashq.results.base import Progress, ResultStore

log = logging.getLogger(__name__)

_IDLE, _RAN, _ABORTING = EventKind.IDLE, EventKind.RAN, EventKind.ABORTING
_COMPLETED, _CANCELLED, _EXPIRED = EventKind.COMPLETED, EventKind.CANCELLED, EventKind.EXPIRED
_PROGRESS_MAX = 10_000  # jobs whose latest progress waits for the result store
_RETRY_MIN_S, _RETRY_MAX_S = 0.1, 5.0
_LIVE: weakref.WeakSet[EventRecorder] = weakref.WeakSet()


# A buffered item: a worker's JobEvent, or (type, envelope, at) from a dispatcher.
@dataclass(frozen=True, slots=True)
class BatchStep:
    """A step of a batch to record (:data:`~kashq.events.base.BATCH_CREATED` ...)."""

    kind: str
    batch_id: str
    name: str
    at: float
    details: dict[str, Any]


_Item = JobEvent | tuple[str, Envelope, float] | BatchStep


class EventRecorder:
    """Records job lifecycle events in ``store`` from a background thread, in batches."""

    def __init__(
        self,
        store: EventStore,
        *,
        flush_interval_s: float = 0.05,
        batch_size: int = 500,
        max_buffered: int = 100_000,
        results: ResultStore | None = None,
        result_ttl_s: float = 86_400.0,
        recent: RecentStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``recent`` lists the ends of jobs within its own bounds (none if it keeps
        nothing); ``clock`` (the driver's) dates the waiting jobs cancelled by hand there."""
        self.store = store
        self.results = results
        self.result_ttl_s = result_ttl_s
        self._progress: dict[str, Progress] = {}  # the latest report of each job, unwritten
        self._progress_lock = threading.Lock()
        self._progress_failing = False
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self.recorded = 0
        self.dropped = 0
        self._enabled = not isinstance(store, NullEventStore)
        self._logs_events = self._enabled
        self._clock = clock
        self._ends: RecentWriter | None = None  # the ends of jobs, for `recent`
        if recent is not None and recent.keep_s > 0:
            self._ends = RecentWriter(recent, batch_size=batch_size, max_waiting=max_buffered)
        # With the event log off, the listener still buffers the ends of jobs for `recent`.
        self._ends_only = self._ends is not None and not self._enabled
        self._buffer: deque[_Item] = deque()
        # Stores that keep JSON get it straight from the steps; others get Events.
        self._text = isinstance(store, TextEventStore)
        self._make: Callable[..., Any] = base.encode_event if self._text else Event
        self._pending: list[Any] = []  # a batch (Events or JSON) that failed to write
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._requested = self._done = 0  # flush requests made / served
        self._failing = False
        self._pause_s = 0.0
        self._retry_at = 0.0
        self._dropped_reported = 0

    @property
    def recent_dropped(self) -> int:
        """Ends of jobs never listed in the store of recent jobs (it was unreachable)."""
        return 0 if self._ends is None else self._ends.dropped

    # -- the hot path ---------------------------------------------------
    def listener(self, event: JobEvent) -> None:
        """A worker listener: remember ``event`` for the background writer (never blocks)."""
        kind = event.kind
        if kind is _IDLE or (kind is _RAN and event.error is None):
            return
        if not self._enabled:  # the event log is off (or closed): ends only, for `recent`
            if self._ends_only and (kind is _COMPLETED or kind is _CANCELLED or kind is _EXPIRED):
                self._push(event)
            return
        if kind is _ABORTING:  # the cancel was recorded when it was asked for
            return
        self._push(event)

    def progress(self, job_id: str, fraction: float, message: str, at: float) -> None:
        """A worker's progress sink: keep the latest report of each job, for the result store."""
        if self.results is None or self._closing:
            return
        with self._progress_lock:
            progress = self._progress
            progress.pop(job_id, None)  # re-inserted last: the oldest come first when capped
            progress[job_id] = Progress(job_id, fraction, message, at)
            if len(progress) > _PROGRESS_MAX:  # the result store is down: drop the oldest
                del progress[next(iter(progress))]
        if self._thread is None:
            self._start()

    def dispatched(self, envelopes: Iterable[Envelope]) -> None:
        """Record that ``envelopes`` were pushed to their queues."""
        if self._enabled:
            for envelope in envelopes:
                self._push((base.DISPATCHED, envelope, envelope.created_at))

    def retried(self, envelopes: Iterable[Envelope]) -> None:
        """Record that ``envelopes`` were pushed back from the failed jobs (``queue:retry``)."""
        if self._enabled:
            now = time.time()
            for envelope in envelopes:
                self._push((base.RETRIED, envelope, now))

    def cancelled(self, envelopes: Iterable[Envelope], *, running: bool = False) -> None:
        """Record that ``envelopes`` were cancelled by hand (``kashq.cancel``): taken off
        their queues, or (``running``) marked for the workers running them to stop.
        Taken off their queues, they are listed in ``recent`` too; a running job is
        listed when its worker stops it."""
        envelopes = tuple(envelopes)
        if self._enabled:
            now = time.time()
            kind = base.CANCEL_REQUESTED if running else base.CANCELLED
            for envelope in envelopes:
                self._push((kind, envelope, now))
        if self._ends is not None and not running and not self._closing:
            self._ends.cancelled(envelopes, self._clock.time())
            if self._thread is None:
                self._start()

    def batch(self, step: BatchStep) -> None:
        """Record a step of a batch: created, progress, finished, cancelled."""
        if self._enabled:
            self._push(step)

    def _push(self, item: _Item) -> None:
        buffer = self._buffer
        buffer.append(item)
        if self._thread is None:
            self._start()
        if len(buffer) >= self.batch_size:
            self._wake.set()

    # -- control --------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Write every event buffered so far now; False if some could not be (yet)."""
        with self._cond:
            if self._thread is None:
                return not self._buffer
            self._requested += 1
            request = self._requested
            self._wake.set()
            self._cond.wait_for(lambda: self._done >= request, timeout_s)
            # A pass that began after the request writes all it found, or stops failing.
            ends_failing = self._ends is not None and self._ends.failing
            return self._done >= request and not self._failing and not ends_failing

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered (dropped and logged if the store is down); close the store."""
        self._enabled = self._ends_only = False  # listeners stop buffering before the last pass
        with self._cond:
            if self._closing:
                return
            self._closing = True
            thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join(timeout_s)
        left = len(self._buffer) + len(self._pending)
        if left:
            log.error("event recorder closed with %d events not recorded", left)
        _LIVE.discard(self)
        self.store.close()

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self._closing:
                return
            self._thread = threading.Thread(
                target=self._run, name="kashq-event-recorder", daemon=True
            )
            self._thread.start()
            _LIVE.add(self)

    # -- the background writer --------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._cond:
                closing, request = self._closing, self._requested
            try:
                self._write(force=closing or request > self._done, final=closing)
            except Exception:  # a bug here must not end recording for good
                log.exception("event recorder failed; going on")
            with self._cond:
                self._done = max(self._done, request)
                self._cond.notify_all()
            if closing:
                return

    def _write(self, *, force: bool, final: bool) -> None:
        """Write what is buffered now, batch by batch, stopping at the first failure."""
        left = len(self._buffer)
        while self._pending or left > 0:
            if not self._pending:
                taken = min(left, self.batch_size)
                left -= taken
                self._pending = self._take(taken)
                if not self._pending:
                    continue
            if self._failing and not force and time.monotonic() < self._retry_at:
                break
            try:
                self._append(self._pending)
            except KashqError as exc:  # the store is unreachable: keep the batch
                self._failed(exc, final)
                break
            except Exception:  # a bug, not an outage: retrying would never end
                log.exception("event store rejected %d events; dropping them", len(self._pending))
                self.dropped += len(self._pending)
                self._pending = []
                continue
            self.recorded += len(self._pending)
            self._pending = []
            self._recovered()
        self._trim()
        self._write_progress()
        if self._ends is not None:
            self._ends.write(force=force, final=final)

    def _write_progress(self) -> None:
        """Write the latest progress of each job reported since the last pass."""
        if self.results is None or (self._progress_failing and time.monotonic() < self._retry_at):
            return  # while the stores fail, progress waits with the events' pause
        with self._progress_lock:
            taken, self._progress = self._progress, {}
        if not taken:
            return
        try:
            self.results.put_progress(list(taken.values()), self.result_ttl_s)
        except KashqError as exc:
            if not self._progress_failing:
                log.warning("result store unreachable (%s); progress kept until it is back", exc)
            self._progress_failing = True
            self._retry_at = time.monotonic() + max(self._pause_s, _RETRY_MIN_S)
            with self._progress_lock:  # newer reports win over the ones put back
                self._progress = {**taken, **self._progress}
            return
        self._progress_failing = False

    def _append(self, batch: list[Any]) -> None:
        if self._text:
            cast(TextEventStore, self.store).append_encoded(batch)
        else:
            self.store.append_many(batch)

    def _take(self, count: int) -> list[Any]:
        host, pid, popleft = base.HOST, os.getpid(), self._buffer.popleft
        events: list[Any] = []
        logs = self._logs_events
        ends = self._ends
        for _ in range(count):
            try:
                item = popleft()
            except IndexError:
                break
            if logs:
                _to_events(item, host, pid, events.append, self._make)
            if ends is not None and isinstance(item, JobEvent):
                ends.take(item)
        return events

    def _failed(self, exc: Exception, final: bool) -> None:
        if final:
            left = len(self._pending) + len(self._buffer)
            log.error("event store unreachable at close (%s): %d events not recorded", exc, left)
            self.dropped += left
            self._pending = []
            self._buffer.clear()
            return
        if not self._failing:
            log.warning(
                "event store unreachable (%s); buffering up to %d events, dropping the "
                "oldest beyond that, until it is back",
                exc,
                self.max_buffered,
            )
        self._failing = True
        self._pause_s = min(max(self._pause_s * 2, _RETRY_MIN_S), _RETRY_MAX_S)
        self._retry_at = time.monotonic() + self._pause_s

    def _recovered(self) -> None:
        if not self._failing:
            return
        self._failing, self._pause_s = False, 0.0
        lost = self.dropped - self._dropped_reported
        self._dropped_reported = self.dropped
        log.warning("event store reachable again; %d events were dropped meanwhile", lost)

    def _trim(self) -> None:
        """Keep at most ``max_buffered`` events waiting, dropping the oldest."""
        excess = len(self._pending) + len(self._buffer) - self.max_buffered
        if excess <= 0:
            return
        if self._pending:
            cut = min(excess, len(self._pending))
            del self._pending[:cut]
            self.dropped += cut
            excess -= cut
        for _ in range(excess):
            try:
                self._buffer.popleft()
            except IndexError:
                break
            self.dropped += 1


def _to_events(
    item: _Item, host: str, pid: int, out: Callable[[Any], None], make: Callable[..., Any]
) -> None:
    """Pass the events of one buffered item, built by ``make`` (``Event`` or ``encode_event``,
    which take the same fields), to ``out``; a reclaimed job's STARTED gives two."""
    if isinstance(item, BatchStep):
        out(make(item.kind, item.batch_id, base.BATCH_TYPE, item.name, 0, item.at, host, pid,
                 item.details))  # fmt: skip
        return
    if isinstance(item, tuple):
        kind, env, at = item
        details: dict[str, Any] = {}
        if kind == base.DISPATCHED and env.available_at > env.created_at:
            details["delay_s"] = round(env.available_at - env.created_at, 3)
        if env.priority:
            details["priority"] = env.priority
        out(make(kind, env.id, env.type, env.queue, env.attempts, at, host, pid, details))
        return
    details = {}
    if item.duration_s is not None and item.kind is not EventKind.RETRIED:  # on attempt_failed
        details["duration_ms"] = round(item.duration_s * 1000, 3)
    if item.delay_s is not None:
        details["delay_s"] = item.delay_s
    if item.error is not None:
        details["error"] = item.error
    if item.progress is not None:
        details["progress"] = item.progress
        if item.message:
            details["message"] = item.message
    kind_name, job_id, job_type, queue = _MAPPING[item.kind], item.job_id, item.job_type, item.queue
    res = item.reservation
    if kind_name is base.STARTED and res is not None and res.deliveries > 1:
        reclaimed = {"deliveries": res.deliveries}
        out(
            make(
                base.RECLAIMED, job_id, job_type, queue, item.attempt, item.at, host, pid, reclaimed
            )
        )
    out(make(kind_name, job_id, job_type, queue, item.attempt, item.at, host, pid, details))


_MAPPING = {
    EventKind.STARTED: base.STARTED,
    EventKind.RAN: base.ATTEMPT_FAILED,  # only RAN with an error is buffered
    EventKind.RETRIED: base.RELEASED,
    EventKind.COMPLETED: base.COMPLETED,
    EventKind.FAILED: base.FAILED,
    EventKind.PARKED: base.PARKED,
    EventKind.PROGRESS: base.PROGRESS,
    EventKind.CANCELLED: base.CANCELLED,
    EventKind.EXPIRED: base.EXPIRED,
}


@atexit.register
def _close_all() -> None:
    """Write what live recorders hold before the interpreter ends (their threads are daemons)."""
    for recorder in list(_LIVE):
        recorder.close(timeout_s=5.0)
