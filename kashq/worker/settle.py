"""What becomes of a job whose attempt did not complete: the worker's outcome policy.

An attempt that raised is retried after its backoff (:mod:`kashq.worker.policy`
decides), put back as a middleware asked (:class:`~kashq.middleware.ReleaseJob`),
or failed for good: the job's ``failed()`` hook is told, the failure is
recorded in the failed-job store and the job acknowledged, or, while the store
is down, parked on the queue to be recorded later (a chain step's ``catch``
callbacks are pushed first, once each, parked and pushed again alike). A job cancelled by an
operator, or past its expiry, is :meth:`Settler.halted`. Each step reports its
event.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from kashq.clock import Clock
from kashq.drivers.base import Driver, Reservation
from kashq.envelope import Envelope, Failure, peek
from kashq.exceptions import DriverError, EnvelopeError, KashqError
from kashq.failed.base import FailedJob, FailedJobStore, utc_from_timestamp
from kashq.job import Job
from kashq.jobevents import EventKind
from kashq.locks import LockBackend
from kashq.locks.unique import UniqueLock
from kashq.middleware import ReleaseJob
from kashq.retry import StopReason
from kashq.worker import execute, policy
from kashq.worker.batches import BatchCounter
from kashq.worker.events import Listeners
from kashq.worker.keeper import OutcomeKeeper
from kashq.worker.options import WorkerOptions
from kashq.worker.outcome import Outcome
from kashq.workflows import steps
from kashq.workflows.batches import MemberState

if TYPE_CHECKING:
    from kashq.tracing.spans import AttemptSpan

log = logging.getLogger(__name__)
# Per-job outcomes, apart so queue:work (which prints its own line per job) can mute them.
job_log = logging.getLogger("kashq.jobs")


class Settler:
    """Settles attempts that did not complete, for one worker."""

    def __init__(
        self,
        driver: Driver,
        failed_store: FailedJobStore,
        options: WorkerOptions,
        *,
        clock: Clock,
        events: Listeners,
        locks_of: Callable[[], LockBackend],
        outcomes: OutcomeKeeper,
        batches: BatchCounter,
    ) -> None:
        self.driver = driver
        self.failed_store = failed_store
        self.options = options
        self._clock = clock
        self._events = events
        self._unique = UniqueLock(locks_of)
        self._outcomes = outcomes
        self._batches = batches

    def after_error(
        self,
        res: Reservation,
        env: Envelope,
        error: BaseException,
        job: Job | None,
        took_s: float | None = None,
        *,
        span: AttemptSpan | None = None,
    ) -> Outcome:
        """Retry the job after its backoff, or fail it for good (``span``: the attempt's,
        when tracing, told the error and the delay)."""
        if isinstance(error, ReleaseJob):  # not a failure: a middleware put the job back
            return self._release(res, env, error, job, took_s, span=span)
        attempts = env.attempts + 1
        env = dataclasses.replace(env, attempts=attempts, exceptions=env.exceptions + 1)
        now = self._clock.time()
        rules = policy.rules_for(env, job, self.options.tries, self.options.backoff)
        delay_s = policy.decide(rules, error, attempts=attempts, exceptions=env.exceptions, now=now)
        if isinstance(delay_s, StopReason):
            return self.fail(res, env, error, job, took_s, reason=delay_s, span=span)
        if span is not None:
            span.raised(error)
            span.retry_in(delay_s)
        retry = dataclasses.replace(env, available_at=now + delay_s)
        self.settle(self.driver.release, res, retry)
        self._events.emit(
            EventKind.RETRIED,
            res,
            env,
            attempt=attempts,
            duration_s=took_s,
            delay_s=delay_s,
            error=one_line(error),
        )
        job_log.info(
            "%s %s attempt %d failed (%s); retry in %gs",
            env.type,
            env.id,
            attempts,
            one_line(error),
            delay_s,
        )
        return Outcome.RETRIED

    def _release(
        self,
        res: Reservation,
        env: Envelope,
        release: ReleaseJob,
        job: Job | None,
        took_s: float | None,
        *,
        span: AttemptSpan | None,
    ) -> Outcome:
        """Put the job back as a middleware asked: no failure, the attempt counted only if asked."""
        attempt = env.attempts + 1
        now = self._clock.time()
        if release.count_attempt:
            env = dataclasses.replace(env, attempts=attempt)
            if env.retry_until is not None:
                if now + release.delay_s > env.retry_until:
                    return self.fail(
                        res, env, release, job, took_s, reason=StopReason.DEADLINE, span=span
                    )
            elif not policy.should_retry(attempt, env.max_tries or self.options.tries):
                return self.fail(res, env, release, job, took_s, reason=StopReason.TRIES, span=span)
        if span is not None:
            span.retry_in(release.delay_s)
        back = dataclasses.replace(env, available_at=now + release.delay_s)
        self.settle(self.driver.release, res, back)
        self._events.emit(
            EventKind.RETRIED, res, env, attempt=attempt, duration_s=took_s,
            delay_s=release.delay_s, error=one_line(release),
        )  # fmt: skip
        job_log.info("%s %s attempt %d %s", env.type, env.id, attempt, one_line(release))
        return Outcome.RETRIED

    def fail(
        self,
        res: Reservation,
        env: Envelope,
        error: BaseException,
        job: Job | None,
        took_s: float | None = None,
        *,
        reason: StopReason = StopReason.TRIES,
        span: AttemptSpan | None = None,
    ) -> Outcome:
        """Fail for good: tell the job (and ``span``, the attempt's when tracing), then
        record it (or park it if the store is down)."""
        if span is not None:
            span.raised(error)
        execute.call_failed_hook(job, error)
        failure = Failure(one_line(error), _traceback(error), reason.value)
        return self.record(res, env, failure, took_s, job=job)

    def record(
        self,
        res: Reservation,
        env: Envelope,
        failure: Failure,
        took_s: float | None = None,
        *,
        job: Job | None = None,
    ) -> Outcome:
        self._unique.free_at_end(env.metadata, env.id)  # failed for good: an equal job may come
        record = FailedJob(
            uuid=env.id,
            connection=self.options.connection,
            queue=env.queue,
            job_type=env.type,
            payload=dataclasses.replace(env, failure=None).encode(),
            error=failure.error,
            exception=failure.exception,
            attempts=env.attempts,
            failed_at=utc_from_timestamp(self._clock.time()),
            reason=failure.reason,
        )
        return self._store(res, record, env, failure, took_s, job=job)

    def fail_undecodable(self, res: Reservation, error: EnvelopeError) -> Outcome:
        job_id, job_type = peek(res.raw)
        record = FailedJob(
            uuid=job_id or res.id,
            connection=self.options.connection,
            queue=res.queue,
            job_type=job_type or "(undecodable)",
            payload=res.raw,
            error=str(error),
            exception=str(error),
            attempts=res.deliveries,
            failed_at=utc_from_timestamp(self._clock.time()),
            reason=StopReason.UNDECODABLE.value,
        )
        return self._store(res, record, None, None)

    def _store(
        self,
        res: Reservation,
        record: FailedJob,
        env: Envelope | None,
        failure: Failure | None,
        took_s: float | None = None,
        *,
        job: Job | None = None,
    ) -> Outcome:
        try:
            if env is not None:
                self._ends(env, "failed")
                if env.chain is not None:  # its chain ends: catch, once
                    steps.push_catch(self.driver, env, record.error, self._clock.time())
            self.failed_store.log(record)
        except Exception as exc:
            again = env is not None and env.failure is not None  # warned when first parked
            log.log(
                logging.INFO if again else logging.WARNING,
                "could not record failed job %s (%s); keeping it queued, retry in %gs",
                record.uuid,
                one_line(exc),
                self.options.park_s,
            )
            if env is not None:
                parked_at = self._clock.time() + self.options.park_s
                parked = dataclasses.replace(env, failure=failure, available_at=parked_at)
                self.settle(self.driver.release, res, parked)
            # An undecodable job cannot carry a parked failure: leaving it
            # reserved makes its lease lapse and the driver hand it out again.
            self._events.emit(
                EventKind.PARKED, res, env, job_type=record.job_type, queue=record.queue,
                attempt=record.attempts, duration_s=took_s, error=record.error,
            )  # fmt: skip
            return Outcome.PARKED
        self._outcomes.failed(record, job)
        self.settle(self.driver.ack, res)
        self._events.emit(
            EventKind.FAILED, res, env, job_type=record.job_type, queue=record.queue,
            attempt=record.attempts, duration_s=took_s, error=record.error,
        )  # fmt: skip
        job_log.warning(
            "%s %s failed for good after %d attempt(s): %s",
            record.job_type,
            record.uuid,
            record.attempts,
            record.error,
        )
        return Outcome.FAILED

    def halted(
        self,
        res: Reservation,
        env: Envelope,
        job: Job | None,
        outcome: Outcome,
        why: str,
        *,
        attempts: int,
        took_s: float | None = None,
    ) -> Outcome:
        """End the job ``cancelled`` or ``expired`` (``outcome``): acknowledged, its unique
        claim freed, its end kept for ``status()``; never retried, no ``failed()`` call,
        nothing in ``failed_jobs``. ``why`` says what happened, in one line."""
        try:
            self._ends(env, "cancelled")
        except DriverError as exc:
            log.warning("could not count job %s in batch %s (%s); it will be delivered again",
                        env.id, env.batch, exc)  # fmt: skip
            return outcome
        self._unique.free_at_end(env.metadata, env.id)
        cancelled = outcome is Outcome.CANCELLED
        self._outcomes.stopped(env, job, "cancelled" if cancelled else "expired", attempts, why)
        self.settle(self.driver.ack, res)
        kind = EventKind.CANCELLED if cancelled else EventKind.EXPIRED
        self._events.emit(kind, res, env, attempt=attempts, duration_s=took_s, error=why)
        job_log.info("%s %s %s", env.type, env.id, why)
        return outcome

    def _ends(self, env: Envelope, state: MemberState) -> None:
        """Count ``env``'s end in its batch, and the chain steps after it that never run."""
        if env.batch is None:
            return
        self._batches.ended(env, state)
        for step in env.chain.next if env.chain is not None else ():
            self._batches.ended(dataclasses.replace(env, id=str(step["id"])), "cancelled")

    def settle(self, step: Callable[..., object], res: Reservation, *args: Envelope) -> None:
        """Ack or release; if the driver fails, the lease lapses and the job comes back."""
        try:
            step(res, *args)
        except DriverError as exc:
            log.warning("could not settle job %s (%s); it will be delivered again", res.id, exc)


def one_line(error: BaseException) -> str:
    """An error as one line: its type and first line (a kashq error: its message)."""
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    name = type(error).__name__
    if isinstance(error, KashqError):
        return message or name
    return f"{name}: {message}" if message else name


def _traceback(error: BaseException) -> str:
    if error.__traceback__ is None:
        return one_line(error)
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))
