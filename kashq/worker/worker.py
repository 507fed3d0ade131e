"""The worker: reserve → run → ack, in consumer threads.

The worker depends only on the :class:`~kashq.drivers.base.Driver` and
:class:`~kashq.failed.base.FailedJobStore` protocols. What becomes of an
attempt that did not complete (retry, release, fail, park) is
:mod:`kashq.worker.settle`; its retry decisions are the pure functions in
:mod:`kashq.worker.policy`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kashq.abort import AbortSignal
from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.base import BatchReserving, Driver, Reservation
from kashq.envelope import Envelope, decode
from kashq.exceptions import DriverError, EnvelopeError, JobCancelled, KashqError, WorkerLost
from kashq.failed.base import FailedJobStore
from kashq.halts import NO_HALTS
from kashq.job import Job
from kashq.jobevents import EventKind, Listener
from kashq.locks import LockBackend, backend_for
from kashq.locks.unique import UniqueLock
from kashq.middleware import JobContext
from kashq.registry import REGISTRY, Registry
from kashq.results import store_for as results_for
from kashq.results.base import ResultStore
from kashq.retry import StopReason
from kashq.worker import execute, policy
from kashq.worker.batches import BatchCounter
from kashq.worker.chains import ChainSteps
from kashq.worker.controls import POLL_S, Controls
from kashq.worker.events import Listeners
from kashq.worker.fetch import Fetcher
from kashq.worker.halting import Halting
from kashq.worker.heartbeat import Heartbeat
from kashq.worker.keeper import OutcomeKeeper
from kashq.worker.loop import ConsumerLoop, Quota
from kashq.worker.options import WorkerOptions
from kashq.worker.outcome import Outcome, WorkerStats
from kashq.worker.prefetch import Holdings, PrefetchedJobs, Prefetcher
from kashq.worker.progress import ProgressReports, Sink
from kashq.worker.settle import Settler, one_line
from kashq.workflows.batches import BatchStore
from kashq.workflows.batches import store_for as batches_for
from kashq.workflows.batches.steps import StepSink

if TYPE_CHECKING:
    from kashq.tracing.spans import AttemptSpan, Tracing

__all__ = ["Outcome", "Worker", "WorkerStats"]

log = logging.getLogger(__name__)

_DRAIN_STEP_S = 0.05


class Worker:
    """Consumes jobs from one driver, recording permanent failures in a store."""

    def __init__(
        self,
        driver: Driver,
        failed_store: FailedJobStore,
        options: WorkerOptions | None = None,
        *,
        registry: Registry = REGISTRY,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Sequence[Listener] = (),
        locks: LockBackend | None = None,
        results: ResultStore | None = None,
        batches: BatchStore | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``tracing`` (:func:`kashq.tracing.build`) runs each attempt in a consumer span."""
        self.driver = driver
        self.failed_store = failed_store
        self.options = options or WorkerOptions()
        self.stats = WorkerStats()
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._active = 0
        self._threads: list[threading.Thread] = []
        self._heartbeat = Heartbeat(driver, self.options.lease_s)
        self._quota = Quota(self.options.max_jobs, self.options.max_time_s)
        self._events = Listeners(listeners, clock)
        self._locks = locks
        self._results = results
        self._batch_store = batches
        self._tracing = tracing
        self._batch_counts = BatchCounter(driver, self._batches_of, clock)
        self._outcomes = OutcomeKeeper(self._results_of, self.options.result_ttl_s, clock)
        self._progress = ProgressReports(self._events, clock)
        self._unique = UniqueLock(self._locks_of)
        self._controls = Controls(driver, self._heartbeat.attempts)
        self._batches = driver if isinstance(driver, BatchReserving) else None
        self._prefetch = (
            None
            if self._batches is None
            else Prefetcher(driver, self._batches, self.options.lease_s)
        )
        self._holdings: Holdings | None = None
        self._settler = Settler(
            driver, failed_store, self.options, clock=clock, events=self._events,
            locks_of=self._locks_of, outcomes=self._outcomes, batches=self._batch_counts,
        )  # fmt: skip
        self._fetcher = Fetcher(
            driver, self.options, controls=self._controls, quota=self._quota,
            counts=self._batch_counts, settler=self._settler, stopping=self._stopping,
        )  # fmt: skip
        self._halting = Halting(
            self._controls, self._settler, self._events, clock, self._job_or_none
        )
        self._controls.on_abort = self._halting.aborting
        self._controls.sweep = self._batch_counts.sweep
        self._chains = ChainSteps(driver, self._settler, clock, self._events, self.options.park_s)

    @property
    def locks(self) -> LockBackend:
        """The lock backend middleware and unique jobs use (default: the driver's)."""
        return self._locks if self._locks is not None else backend_for(self.driver)

    def _locks_of(self) -> LockBackend:
        return self.locks

    @property
    def results(self) -> ResultStore:
        """Where outcomes are kept (default: the store sharing the driver's storage)."""
        if self._results is None:
            self._results = results_for(self.driver)
        return self._results

    def _results_of(self) -> ResultStore:
        return self.results

    def _batches_of(self) -> BatchStore:
        """Where this worker counts its batch jobs (default: the store on the driver's storage)."""
        if self._batch_store is None:
            self._batch_store = batches_for(self.driver)
        return self._batch_store

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every :class:`JobEvent` from now on."""
        self._events.add(listener)

    def send_progress_to(self, sink: Sink) -> None:
        """Give every ``self.progress()`` report of this worker's jobs to ``sink``
        (the event recorder's :meth:`~kashq.events.EventRecorder.progress`)."""
        self._progress.sink = sink

    def send_batch_steps_to(self, sink: StepSink) -> None:
        """Give the steps of the batches this worker counts (progress, finished, cancelled)
        to ``sink`` (the event recorder's :meth:`~kashq.events.EventRecorder.batch`)."""
        self._batch_counts.steps = sink

    def track_holdings(self, holdings: Holdings) -> None:
        """Tell ``holdings`` of every reserve and of each job taken from it (see
        :class:`~kashq.worker.prefetch.Holdings`); for ``start(1)`` only."""
        self._holdings = self._fetcher.holdings = holdings

    # -- one job --------------------------------------------------------
    def run_next(self, wait_s: float = 0.0) -> Outcome | None:
        """Reserve and process one job; None if none arrived within ``wait_s``
        (or every queue is paused)."""
        self._controls.refresh(stale_s=POLL_S)
        queues = self._controls.active(self.options.queues)
        if not queues:
            return None
        reservation = self.driver.reserve(queues, lease_s=self.options.lease_s, wait_s=wait_s)
        return None if reservation is None else self.process(reservation)

    def process(self, reservation: Reservation, *, defer_ack: bool = False) -> Outcome:
        """Run one reserved job to an outcome; never raises for a job's fault.

        With ``defer_ack`` a completed job is not acknowledged here: the caller
        passes it as ``ack=`` to its next ``reserve`` (one round trip per job).
        """
        signal = AbortSignal()  # raised by the controls if the job is cancelled
        self._heartbeat.track(reservation, signal)
        try:
            ready = self._ready(reservation)
            if isinstance(ready, Outcome):
                outcome = ready
            elif self._tracing is None or not self._tracing.active():
                outcome = self._attempt(reservation, *ready, defer_ack, signal, span=None)
            else:  # the attempt in a consumer span
                res, (env, prepared) = reservation, ready
                outcome = self._tracing.attempt(
                    env, res.deliveries,
                    lambda span: self._attempt(res, env, prepared, defer_ack, signal, span=span),
                )  # fmt: skip
        finally:
            self._heartbeat.untrack(reservation)
        with self._lock:
            self.stats.count(outcome)
        return outcome

    def _attempt(
        self,
        res: Reservation,
        env: Envelope,
        prepared: execute.Prepared,
        defer_ack: bool,
        signal: AbortSignal,
        *,
        span: AttemptSpan | None,
    ) -> Outcome:
        """Run the job of ``env`` once and settle what came of it (``span``: its
        attempt's consumer span, when tracing)."""
        timeout_s = env.timeout_s if env.timeout_s is not None else self.options.timeout_s
        attempt = env.attempts + 1
        self._unique.free_at_start(env.metadata, env.id)
        self._events.emit(EventKind.STARTED, res, env, attempt=attempt, timeout_s=timeout_s)
        started = time.perf_counter()
        signal.started = True
        context = JobContext(
            self.driver, env, self._clock, self._locks_of, self._progress.report, signal,
            self.options.connection, self._results_of, self._batches_of,
        )  # fmt: skip
        error, value = self._run_job(prepared, context, timeout_s)
        took_s = time.perf_counter() - started
        self._events.emit(
            EventKind.RAN, res, env, attempt=attempt, duration_s=took_s,
            error=None if error is None else one_line(error),
        )  # fmt: skip
        if signal.requested or (error is not None and isinstance(error, JobCancelled)):
            halted = self._halting.after_run(res, env, prepared.job, signal, error, took_s=took_s)
            if halted is not None:
                return halted
        if error is not None:
            return self._settler.after_error(res, env, error, prepared.job, took_s, span=span)
        self._unique.free_at_end(env.metadata, env.id)
        if value is not None:  # kept before the ack: a completed job always has its result
            self._outcomes.completed(env, prepared.job, value, attempt)
        if env.batch is not None:
            if defer_ack:  # counted with the others, just before their acks go
                self._batch_counts.later(env)
            elif not self._batch_counts.counted(env):
                return Outcome.RETRIED  # left unacknowledged: counted when it comes back
        if (env.chain is not None or context.chain_edits) and not self._chains.advanced(
            res, env, context.chain_edits
        ):
            return Outcome.RETRIED  # back on its queue, to push its successor later
        if not defer_ack:
            self._settler.settle(self.driver.ack, res)
        self._events.emit(EventKind.COMPLETED, res, env, attempt=attempt, duration_s=took_s)
        return Outcome.COMPLETED

    def _ready(self, res: Reservation) -> Outcome | tuple[Envelope, execute.Prepared]:
        """The job to run, or the end of one that must not run: undecodable, a parked
        failure, cancelled, expired, lost to dead workers, or unrunnable."""
        try:
            env = decode(res.raw)
        except EnvelopeError as exc:
            return self._settler.fail_undecodable(res, exc)
        if env.failure is not None or (env.chain is not None and env.chain.done):
            return self._finish(res, env)
        if self._controls.halts is not NO_HALTS or env.expires_at is not None:
            halted = self._halting.before_start(res, env)
            if halted is not None:
                return halted
        max_tries = env.max_tries or self.options.tries
        if policy.worker_lost(res.deliveries, env.max_deliveries or max_tries):
            lost = WorkerLost(
                f"worker lost: delivered {res.deliveries} times and its worker died "
                f"before finishing each time (max_deliveries={env.max_deliveries or max_tries})"
            )
            env = dataclasses.replace(env, attempts=env.attempts + res.deliveries - 1)
            job = self._job_or_none(env)
            return self._settler.fail(res, env, lost, job, reason=StopReason.WORKER_LOST)
        try:
            prepared = execute.prepare(env, self._registry)
        except KashqError as exc:  # unknown type, invalid payload, no handle()
            return self._unrunnable(res, env, exc)
        return env, prepared

    def _unrunnable(self, res: Reservation, env: Envelope, error: KashqError) -> Outcome:
        """Fail for good a job that cannot be run, its attempt counted (and traced)."""
        failed = dataclasses.replace(env, attempts=env.attempts + 1)
        reason = policy.unrunnable(error)
        if self._tracing is None:
            return self._settler.fail(res, failed, error, None, reason=reason)
        return self._tracing.attempt(
            env, res.deliveries,
            lambda span: self._settler.fail(res, failed, error, None, reason=reason, span=span),
        )  # fmt: skip

    def _finish(self, res: Reservation, env: Envelope) -> Outcome:
        """A job that ended already, back only to finish: a parked failure to record, or a
        chain step that completed and has its successor still to push."""
        if env.failure is not None:
            return self._settler.record(res, env, env.failure)
        return self._chains.resume(res, env)

    def _run_job(
        self, prepared: execute.Prepared, context: JobContext, timeout_s: float | None
    ) -> tuple[BaseException | None, object]:
        """Run the job; what it raised (or None) and what it returned.

        The error is handled by the caller, outside this ``except`` block, so
        a ``failed()`` hook neither sees it as the exception being handled nor
        chains its own errors to it.
        """
        try:
            value = execute.run_job(prepared, timeout_s, context)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit from a job fails its attempt, not the worker
            return exc, None
        finally:
            self._progress.ended(context.envelope.id)
        return None, value

    def _job_or_none(self, env: Envelope) -> Job | None:
        """The Job instance for ``env`` if it can be built (to call its failed() hook)."""
        try:
            return execute.prepare(env, self._registry).job
        except KashqError:
            return None

    def abandon(self, reservation: Reservation, error: BaseException) -> Outcome:
        """Count an attempt that ended outside :meth:`process` as failed by ``error``.

        For a job whose process was killed for running past its timeout, or
        died: the attempt follows the retry rules (released with a backoff, or
        failed for good with the job's ``failed()`` hook called).
        """
        try:
            env = decode(reservation.raw)
        except EnvelopeError as exc:
            return self._settler.fail_undecodable(reservation, exc)
        if env.failure is not None:
            return self._settler.record(reservation, env, env.failure)
        halted = self._halting.abandoned(reservation, env)
        if halted is not None:
            return halted
        return self._settler.after_error(reservation, env, error, self._job_or_none(env))

    # -- loops ----------------------------------------------------------
    def drain(self) -> None:
        """Process until the queues hold no ready or delayed job, sleeping out backoffs.

        Used by the sync driver and :func:`kashq.testing.drain`; with a fake
        clock the waits are instant, and on the memory driver exact.
        """
        self._controls.refresh()
        queues = self._controls.active(self.options.queues)
        next_due_in = getattr(self.driver, "next_due_in", None)  # the memory driver's
        while queues:
            if self.run_next() is not None:
                continue
            if not any(s.delayed for s in self.driver.sizes(queues).values()):
                return
            wait_s = None if next_due_in is None else next_due_in(queues)
            self._clock.sleep(_DRAIN_STEP_S if wait_s is None else wait_s)

    def start(self, concurrency: int = 1) -> Worker:
        """Start ``concurrency`` consumer threads (and a lease heartbeat); returns at once."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if concurrency > 1 and self._holdings is not None:
            raise ValueError("a worker tracking its holdings runs one consumer thread")
        if self._threads:
            raise RuntimeError("worker already started")
        self._controls.start()  # paused queues and cancels are known before the first reserve
        self._stopping.clear()
        self._quota.restart()
        self._active = concurrency
        self._threads = [
            threading.Thread(target=self._consume, name=f"kashq-worker-{i}", daemon=True)
            for i in range(concurrency)
        ]
        if self._prefetch is not None and self.options.prefetch > 1:
            consuming = functools.partial(self._prefetch.watch, self._stopping, self._consuming)
            self._threads.append(
                threading.Thread(target=consuming, name="kashq-prefetch", daemon=True)
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop taking jobs, let running ones finish, and wait for the threads."""
        self._stopping.set()
        self.join(timeout_s)

    def request_stop(self) -> None:
        """Ask the threads to stop after their current job; returns at once.

        Not for signal handlers (it takes a lock): set a flag there instead.
        """
        self._stopping.set()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the consumer threads to end (limits reached or stopped)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        if not any(t.is_alive() for t in self._threads):
            self._threads = []
            self._stopping.set()
            self._heartbeat.close()
            self._controls.stop()

    def run(self, concurrency: int = 1) -> None:
        """Consume in this thread's stead until stopped or a limit is reached (blocking)."""
        self.start(concurrency)
        try:
            self.join()
        except KeyboardInterrupt:
            self.stop()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def active_threads(self) -> int:
        """Consumer threads started by :meth:`start` that have not ended yet."""
        return self._active

    def _consuming(self) -> bool:
        return self._active > 0

    def _consume(self) -> None:
        loop = ConsumerLoop(
            self._prefetch.register() if self._prefetch is not None else PrefetchedJobs()
        )
        try:
            while not self._stopping.is_set():
                if not self._quota.claim():  # --max-jobs or --max-time reached
                    break
                try:
                    res, empty = self._next_job(loop)
                    if empty:
                        self._quota.unclaim()
                        break
                    if res is None:
                        self._quota.unclaim()
                        self._events.emit(EventKind.IDLE, None, None)
                    else:
                        started = loop.running()
                        loop.ran(res, self.process(res, defer_ack=True), started)
                    loop.pause_s = 0.0
                except Exception as exc:  # DriverError: unreachable queue; else a kashq bug
                    self._quota.unclaim()
                    pause_s = loop.pause()
                    if isinstance(exc, DriverError):
                        log.warning("queue unavailable (%s); retrying in %.1fs", exc, pause_s)
                    else:
                        log.exception("unexpected error in the worker loop; going on")
                    self._stopping.wait(pause_s)
        finally:
            if self._prefetch is not None:
                self._prefetch.unregister(loop.waiting)
            self._batch_counts.flush(loop.acks)
            if loop.acks:
                self._fetcher.ack_now(loop.acks)
            execute.close_thread_loop()
            with self._lock:
                self._active -= 1

    def _next_job(self, loop: ConsumerLoop) -> tuple[Reservation | None, bool]:
        """The job to run next (None: none came), and whether ``--stop-when-empty`` ends here."""
        opts = self.options
        res = None if self._prefetch is None else self._prefetch.take(loop.waiting)
        if res is None:
            res = self._fetcher.fetch(loop, 0.0 if opts.stop_when_empty else opts.sleep_s)
            if res is None and opts.stop_when_empty:
                if self._queues_empty():
                    return None, True
                res = self._fetcher.fetch(loop, opts.sleep_s)  # delayed or reserved jobs remain
        if res is not None and self._stopping.is_set():
            self._hand_back(res)  # reserved while stop was requested
            return None, False
        if res is not None and self._holdings is not None:
            self._holdings.taking(res)
        return res, False

    def _hand_back(self, res: Reservation) -> None:
        """Put a job back as it was, for another worker (this one is stopping)."""
        if self._prefetch is not None:
            self._prefetch.give_back([res])
            return
        try:
            env = decode(res.raw)
        except EnvelopeError:
            return  # its lease brings it back; the next worker fails it properly
        self._settler.settle(self.driver.release, res, env)

    def _queues_empty(self) -> bool:
        """No job ready, delayed or reserved (Laravel's --stop-when-empty counts them all);
        a sharded connection counts the shards that answer (its ``reachable_sizes``)."""
        queues = self._controls.active(self.options.queues)  # a paused queue counts as empty
        if not queues:
            return True
        sizes = getattr(self.driver, "reachable_sizes", self.driver.sizes)
        return all(s.total == 0 for s in sizes(queues).values())
