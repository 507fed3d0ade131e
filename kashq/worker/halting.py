"""Jobs an operator stopped, or that waited too long: the worker's cancel and expiry rules.

Before a job starts: one whose cancel marker the worker knows ends
``cancelled``, one past its ``expires_at`` ends ``expired`` (its ``expired()``
hook told); neither runs. After an attempt: one that met its cancel (a check
raised :class:`~kashq.JobCancelled`, or it raised after the cancel was asked)
ends ``cancelled``, never retried; one the cancel reached too late completes.
An attempt whose process was killed after its grace period ends ``cancelled``
in the successor that settles it. All are settled by
:meth:`~kashq.worker.settle.Settler.halted`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kashq.abort import AbortSignal
from kashq.clock import Clock
from kashq.drivers.base import Reservation
from kashq.envelope import Envelope
from kashq.exceptions import JobCancelled
from kashq.job import Job
from kashq.jobevents import EventKind
from kashq.worker import execute
from kashq.worker.controls import Attempt, Controls
from kashq.worker.events import Listeners
from kashq.worker.outcome import Outcome
from kashq.worker.settle import Settler

log = logging.getLogger(__name__)

CANCELLED_WAITING = "cancelled before it started"
CANCELLED_RUNNING = "cancelled while running"
CANCELLED_KILLED = "cancelled while running; stopped after its grace period"


class Halting:
    """Cancels and expiry for one worker."""

    def __init__(
        self,
        controls: Controls,
        settler: Settler,
        events: Listeners,
        clock: Clock,
        job_of: Callable[[Envelope], Job | None],
    ) -> None:
        self._controls = controls
        self._settler = settler
        self._events = events
        self._clock = clock
        self._job_of = job_of

    def before_start(self, res: Reservation, env: Envelope) -> Outcome | None:
        """The end of a job that must not start (cancelled, expired), or None to run it."""
        if self._controls.cancelled(env.id):
            return self.cancelled(res, env, None, CANCELLED_WAITING, attempts=env.attempts)
        if env.batch is not None and env.batch in self._controls.halts.batches:
            why = "cancelled with its batch before it started"
            return self._settler.halted(
                res, env, None, Outcome.CANCELLED, why, attempts=env.attempts
            )
        if env.expires_at is not None and self._clock.time() >= env.expires_at:
            job = self._job_of(env)
            execute.call_hook(job, "expired")
            late_s = self._clock.time() - env.expires_at
            why = f"expired: not started within its time ({late_s:.3g}s late)"
            return self._settler.halted(res, env, job, Outcome.EXPIRED, why, attempts=env.attempts)
        return None

    def after_run(
        self,
        res: Reservation,
        env: Envelope,
        job: Job | None,
        signal: AbortSignal,
        error: BaseException | None,
        *,
        took_s: float,
    ) -> Outcome | None:
        """The end of an attempt a cancel stopped, or None to settle it as usual."""
        attempt = env.attempts + 1
        if signal.raised or (error is not None and signal.requested):
            return self.cancelled(res, env, job, CANCELLED_RUNNING, attempts=attempt, took_s=took_s)
        if isinstance(error, JobCancelled):  # the job cancelled itself
            return self.cancelled(res, env, job, str(error), attempts=attempt, took_s=took_s)
        if signal.requested:  # the cancel came too late: the job completed first
            self._controls.forget(env.id)
        return None

    def abandoned(self, res: Reservation, env: Envelope) -> Outcome | None:
        """The end of an attempt whose process died, if a cancel killed it; else None."""
        self._controls.refresh()
        if not self._controls.cancelled(env.id):
            return None
        job, attempts = self._job_of(env), env.attempts + 1
        return self.cancelled(res, env, job, CANCELLED_KILLED, attempts=attempts)

    def cancelled(
        self,
        res: Reservation,
        env: Envelope,
        job: Job | None,
        why: str,
        *,
        attempts: int,
        took_s: float | None = None,
    ) -> Outcome:
        """End the job cancelled, and delete its marker (if one told the worker)."""
        outcome = self._settler.halted(
            res, env, job, Outcome.CANCELLED, why, attempts=attempts, took_s=took_s
        )
        if self._controls.cancelled(env.id):
            self._controls.forget(env.id)
        return outcome

    def aborting(self, attempt: Attempt) -> None:
        """The controls read a cancel of a running job: tell the listeners (a worker
        process then gives the attempt its grace before it is killed)."""
        env = attempt.envelope
        log.info("%s %s was cancelled while running; stopping it", env.type, env.id)
        self._events.emit(EventKind.ABORTING, attempt.reservation, env, attempt=env.attempts + 1)
