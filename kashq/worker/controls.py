"""What operators stopped, as one worker sees it: paused queues and cancelled jobs.

The halts (:mod:`kashq.halts`) are read from the driver's control records
when the worker starts, and then about once a second on a thread of their own
while it runs: one round trip a second per worker, none per job. Reserving
skips paused queues; a job whose cancel marker is known is settled
``cancelled`` instead of being started; and each refresh finds the running
jobs that were cancelled among the attempts the worker's heartbeat tracks
(:meth:`~kashq.worker.heartbeat.Heartbeat.attempts`: nothing is registered
here per job) and raises their :class:`~kashq.abort.AbortSignal`,
telling ``on_abort`` (the worker, which tells its listeners: a ``queue:work``
process then gives the job its grace period before it is killed). Every
:data:`SWEEP_S` the thread also runs the worker's ``sweep`` (batch callbacks
a dead worker made due and did not push).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kashq.abort import AbortSignal
from kashq.drivers.base import Driver, Reservation
from kashq.envelope import Envelope, decode
from kashq.exceptions import DriverError, EnvelopeError
from kashq.halts import HALT_PREFIX, NO_HALTS, Halts, job_record, read_halts

log = logging.getLogger(__name__)

POLL_S = 1.0
SWEEP_S = 30.0  # how often the thread runs its sweep (a batch's callbacks left unpushed)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A running attempt the controls may have to stop."""

    reservation: Reservation
    envelope: Envelope
    signal: AbortSignal


class Controls:
    """One worker's view of the halts, and the attempts it runs that a cancel may stop."""

    def __init__(
        self,
        driver: Driver,
        attempts: Callable[[], Iterable[tuple[Reservation, AbortSignal]]] = list,
        poll_s: float = POLL_S,
    ) -> None:
        """``attempts`` lists the attempts the worker runs now, with their signals."""
        self._driver = driver
        self._attempts = attempts
        self.on_abort: Callable[[Attempt], None] = lambda attempt: None
        self._poll_s = poll_s
        self._read_at = float("-inf")
        self.halts: Halts = NO_HALTS
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._warned = False
        # Work done on this thread every sweep_s: the worker's batch sweep.
        self.sweep: Callable[[], None] | None = None
        self.sweep_s = SWEEP_S
        self._swept_at = time.monotonic()

    # -- reading ------------------------------------------------------------
    def refresh(self, *, stale_s: float = 0.0) -> Halts:
        """Read the halts now (one round trip), or only if the last read is older than
        ``stale_s``; on failure keep the last known, warning once."""
        now = time.monotonic()
        if stale_s and now - self._read_at < stale_s:
            return self.halts
        self._read_at = now
        try:
            records = self._driver.get_control(HALT_PREFIX)
        except DriverError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot read paused queues and cancels (%s); keeps trying", exc)
            return self.halts
        self._warned = False
        self.halts = halts = read_halts(records)
        if halts.cancelled:
            for res, signal in self._attempts():
                # One not started yet meets its marker before it starts, or at the next read.
                if res.id in halts.cancelled and signal.started and signal.request():
                    self._aborting(res, signal)
        return halts

    def _aborting(self, res: Reservation, signal: AbortSignal) -> None:
        try:
            env = decode(res.raw)
        except EnvelopeError:  # it could not have started: nothing to tell
            return
        self.on_abort(Attempt(res, env, signal))

    def active(self, queues: Sequence[str]) -> Sequence[str]:
        """``queues`` without the paused ones (``queues`` itself when none is paused)."""
        paused = self.halts.paused
        if not paused:
            return queues
        return tuple(queue for queue in queues if queue not in paused)

    def cancelled(self, job_id: str) -> bool:
        """Whether ``job_id`` carries a cancel marker (as last read)."""
        cancelled = self.halts.cancelled
        return bool(cancelled) and job_id in cancelled

    def forget(self, job_id: str) -> None:
        """The cancelled job ``job_id`` is settled: delete its marker."""
        try:
            self._driver.delete_control(job_record(job_id))
        except DriverError as exc:  # it expires on its own; a worker meeting it settles again
            log.warning("could not delete the cancel marker of %s (%s)", job_id, exc)

    # -- the thread -------------------------------------------------------------
    def start(self) -> None:
        """Read the halts now, then again every ``poll_s`` on a thread until :meth:`stop`."""
        self.refresh()
        with self._lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._poll, args=(self._stop,), name="kashq-controls", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            self._thread = None

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self._poll_s):
            try:
                self.refresh()
                if self.sweep is not None and time.monotonic() - self._swept_at >= self.sweep_s:
                    self._swept_at = time.monotonic()
                    self.sweep()
            except Exception:  # a bug must not end the polling silently
                log.exception("reading paused queues and cancels failed; going on")
