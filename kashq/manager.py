"""The queue manager: a process's connections wired from settings, and the current manager.

This is Laravel's ``QueueManager``. From the settings (config file, .env,
``KASHQ_*``) it builds named connections when first used, with their failed-job
stores, lock backends and event recorders, and the workers that consume them.
Its :class:`~kashq.dispatcher.QueueDispatcher` pushes jobs onto those
connections; a job's connection is looked up when it is dispatched, never when
its class is defined. The current manager is set with :func:`configure`, or
built from settings on first use. Workers do not use it; they take a driver and
a failed-job store directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kashq import control, tracing
from kashq.alerts import AlertDispatcher, dispatcher_from_settings
from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.config import CONNECTIONS, Settings, load_settings
from kashq.control import Cancellation
from kashq.dispatcher import QueueDispatcher
from kashq.drivers.base import Driver, is_job_id
from kashq.drivers.memory import MemoryDriver
from kashq.drivers.sync import SyncDriver
from kashq.envelope import Envelope
from kashq.events import EventRecorder, store_for
from kashq.exceptions import ConfigError
from kashq.failed.base import FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore
from kashq.history import HistoryStore
from kashq.history import store_for as history_for
from kashq.job import Dispatchable
from kashq.jobevents import EVERY_WORKER
from kashq.listing import JobPage, list_jobs
from kashq.locks import LockBackend, backend_for
from kashq.recent import RecentStore
from kashq.recent import store_for as recent_for
from kashq.results import ResultStore
from kashq.results import store_for as results_for
from kashq.retry import parse_backoff
from kashq.status import JobHandle
from kashq.worker.options import WorkerOptions
from kashq.workflows.batches import BatchRecord, BatchStore
from kashq.workflows.batches import store_for as batches_for

if TYPE_CHECKING:
    from kashq.history.recorder import HistoryRecorder
    from kashq.outbox import Outbox
    from kashq.tracing import TracerProvider
    from kashq.transactions import Transaction
    from kashq.worker.worker import Worker
    from kashq.workflows.batch import Batch, PendingBatch
    from kashq.workflows.chain import PendingChain


class QueueManager:
    """Builds and caches connections and what goes with them; dispatches onto them."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        failed_store: FailedJobStore | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """``tracer_provider``: where the OpenTelemetry spans of this manager's dispatches
        and workers go (default: the global provider; see ``KASHQ_TRACING``)."""
        self.settings = settings or load_settings()
        self.tracing = tracing.build(self.settings.tracing, tracer_provider)
        self.clock = clock
        self._given_store = failed_store
        self._stores: dict[bool, FailedJobStore] = {}  # keyed by "durable"
        self._connections: dict[str, Driver] = {}
        self._recorders: dict[str, EventRecorder] = {}
        self._results: dict[str, ResultStore] = {}
        self._recent: dict[str, RecentStore] = {}
        self._batch_stores: dict[str, BatchStore] = {}
        self._histories: dict[str, HistoryStore] = {}
        self._history_recorders: dict[str, HistoryRecorder] = {}
        self._alerts: list[AlertDispatcher] = []
        self._outbox: Outbox | None = None
        self._lock = threading.Lock()
        self._dispatcher = QueueDispatcher(
            connection=self.connection,
            locks=self.locks,
            recorder=self.recorder,
            default_queue=self.settings.queue,
            clock=clock,
            handle=self._handle,
            batches=self.batches,
            outbox=self._put_in_outbox,
            after_commit=self.settings.after_commit,
            tracing=self.tracing,
        )

    # -- connections ----------------------------------------------------
    def connection(self, name: str | None = None) -> Driver:
        """The driver for connection ``name`` (default: ``settings.connection``)."""
        name = name or self.settings.connection
        with self._lock:
            driver = self._connections.get(name)
            if driver is None:
                driver = self._connections[name] = self._build(name)
            return driver

    def add_connection(self, name: str, driver: Driver) -> None:
        """Serve connection ``name`` with ``driver`` (e.g. a :class:`kashq.ShardedDriver`).

        Jobs reach it with ``on_connection(name)`` or ``connection = name``.
        The manager closes it with the others.
        """
        with self._lock:
            old = self._connections.get(name)
            if old is not None and old is not driver:
                raise ConfigError(f"connection {name!r} is already open")
            self._connections[name] = driver

    def failed_store(self, connection: str | None = None) -> FailedJobStore:
        """Where jobs of ``connection`` (default: the default one) that fail for good go.

        The ``failed_jobs`` table at ``KASHQ_DATABASE_URL`` for durable
        connections (database, redis, sharded), so a failure outlives the process; in
        memory for memory and sync. A store given to the manager serves all.
        """
        durable = (connection or self.settings.connection) not in ("memory", "sync")
        with self._lock:
            if self._given_store is not None:
                return self._given_store
            store = self._stores.get(durable)
            if store is None:
                if durable:
                    from kashq.failed.database import DatabaseFailedJobStore

                    s = self.settings
                    store = DatabaseFailedJobStore(s.database_url, table_prefix=s.table_prefix)
                else:
                    store = MemoryFailedJobStore()
                self._stores[durable] = store
            return store

    def _build(self, name: str) -> Driver:
        if name == "memory":
            return MemoryDriver(clock=self.clock)
        if name == "sync":
            return SyncDriver(self._drain_inline, clock=self.clock)
        if name == "redis":
            from kashq.drivers.redis import RedisDriver

            s = self.settings
            return RedisDriver(s.redis_url, prefix=s.prefix, clock=self.clock)
        if name == "sharded":
            from kashq.drivers.sharded import ShardedDriver

            s = self.settings
            return ShardedDriver(
                s.shards, strategy=s.shard_strategy, prefix=s.prefix, clock=self.clock
            )
        if name == "database":
            from kashq.drivers.database import DatabaseDriver

            s = self.settings
            return DatabaseDriver(s.database_url, clock=self.clock, table_prefix=s.table_prefix)
        raise ConfigError(f"unknown connection {name!r}: expected one of {', '.join(CONNECTIONS)}")

    def recorder(self, connection: str | None = None) -> EventRecorder | None:
        """The event recorder of ``connection``; None when events are off (``KASHQ_EVENTS``)."""
        return self.worker_recorder(connection) if self.settings.events else None

    def worker_recorder(self, connection: str | None = None) -> EventRecorder:
        """The recorder a worker reports to; with events off it records only progress and
        (with ``KASHQ_KEEP_COMPLETED``) the jobs that ended recently."""
        name = connection or self.settings.connection
        recorder = self._recorders.get(name)
        if recorder is not None:
            return recorder
        driver, results = self.connection(name), self.results(name)
        recent = self.recent(name) if self.settings.keep_completed > 0 else None
        with self._lock:
            recorder = self._recorders.get(name)
            if recorder is None:
                recorder = self._recorders[name] = EventRecorder(
                    store_for(driver, self.settings),
                    results=results,
                    result_ttl_s=self.settings.result_ttl,
                    recent=recent,
                    clock=self.clock,
                )
            return recorder

    def write_records(self, connection: str | None = None) -> None:
        """Write what this process's workers on ``connection`` recorded so far (events and
        recent jobs go in batches), waiting up to a second: a read from here then sees it."""
        recorder = self._recorders.get(connection or self.settings.connection)
        if recorder is not None:
            recorder.flush(timeout_s=1.0)

    def results(self, connection: str | None = None) -> ResultStore:
        """Where connection ``connection`` keeps its jobs' outcomes and progress."""
        name = connection or self.settings.connection
        driver = self.connection(name)
        with self._lock:
            store = self._results.get(name)
            if store is None:
                store = self._results[name] = results_for(driver)
            return store

    def batches(self, connection: str | None = None) -> BatchStore:
        """Where connection ``connection`` keeps its batches."""
        name = connection or self.settings.connection
        driver = self.connection(name)
        with self._lock:
            store = self._batch_stores.get(name)
            if store is None:
                store = self._batch_stores[name] = batches_for(driver)
            return store

    def recent(self, connection: str | None = None) -> RecentStore:
        """Where connection ``connection`` lists the jobs that ended recently, per queue."""
        name = connection or self.settings.connection
        driver = self.connection(name)
        with self._lock:
            store = self._recent.get(name)
            if store is None:
                store = self._recent[name] = recent_for(driver, self.settings)
            return store

    def history(self, connection: str | None = None) -> HistoryStore:
        """Where connection ``connection`` keeps its metrics history (:mod:`kashq.history`)."""
        name = connection or self.settings.connection
        driver = self.connection(name)
        with self._lock:
            store = self._histories.get(name)
            if store is None:
                store = self._histories[name] = history_for(driver, self.settings)
            return store

    def history_recorder(self, connection: str | None = None) -> HistoryRecorder | None:
        """The recorder feeding ``connection``'s metrics history from this process's workers;
        None when the history is off (``KASHQ_KEEP_HISTORY=0``)."""
        if self.settings.keep_history <= 0:
            return None
        name = connection or self.settings.connection
        store = self.history(name)
        with self._lock:
            recorder = self._history_recorders.get(name)
            if recorder is None:
                from kashq.history.recorder import HistoryRecorder

                recorder = self._history_recorders[name] = HistoryRecorder(store)
            return recorder

    def locks(self, connection: str | None = None) -> LockBackend:
        """The lock backend sharing connection ``connection``'s storage."""
        return backend_for(self.connection(connection))

    def _drain_inline(self, driver: Driver, queues: Sequence[str]) -> None:
        from kashq.worker.worker import Worker  # the sync connection runs its jobs here

        options = self.worker_options(connection="sync", queues=tuple(queues))
        # The sync driver hands its private memory driver over: use the locks
        # its dispatches took (those of the sync connection).
        locks, results = self.locks("sync"), self.results("sync")
        Worker(
            driver, self.failed_store("sync"), options, clock=self.clock, locks=locks,
            results=results, batches=self.batches("sync"), tracing=self.tracing,
        ).drain()  # fmt: skip

    # -- workers --------------------------------------------------------
    def worker_options(self, **overrides: Any) -> WorkerOptions:
        """Worker options from settings, with ``overrides`` (WorkerOptions fields) on top."""
        s = self.settings
        fields: dict[str, Any] = {
            "connection": s.connection,
            "queues": (s.queue,),
            "tries": s.max_retry,
            "backoff": parse_backoff(s.backoff),
            "result_ttl_s": s.result_ttl,
            "timeout_s": s.timeout,
            "lease_s": s.retry_after,
            "prefetch": s.prefetch or 0,  # 0: the connection's own default
            "cancel_grace_s": s.cancel_grace,
        }
        return WorkerOptions(**{**fields, **overrides})

    def worker(self, connection: str | None = None, **overrides: Any) -> Worker:
        """A :class:`Worker` on ``connection`` using this manager's failed-job store.

        It records events (unless ``KASHQ_EVENTS`` is off) and metrics
        (:data:`kashq.metrics.DefaultMetrics`), and sends alerts for jobs that
        fail for good when alerters are configured.
        """
        from kashq.worker.worker import Worker  # dispatching never loads the worker

        name = connection or self.settings.connection
        options = self.worker_options(connection=name, **overrides)
        store = self.failed_store(name)
        worker = Worker(
            self.connection(name), store, options, clock=self.clock, results=self.results(name),
            batches=self.batches(name), tracing=self.tracing,
        )  # fmt: skip
        self._listen(worker, name)
        return worker

    def _listen(self, worker: Worker, name: str) -> None:
        from kashq.metrics import DefaultMetrics  # prometheus-client loads with the first worker

        recorder = self.worker_recorder(name)
        worker.add_listener(recorder.listener)
        worker.send_progress_to(recorder.progress)
        worker.send_batch_steps_to(recorder.batch)
        DefaultMetrics.attach(worker)
        history = self.history_recorder(name)
        if history is not None:
            worker.add_listener(history.listener)
        alerts = dispatcher_from_settings(self.settings, connection=name)
        if alerts is not None:
            worker.add_listener(alerts.listener)
            with self._lock:
                self._alerts.append(alerts)
        for listener in EVERY_WORKER:
            worker.add_listener(listener)

    # -- dispatching ----------------------------------------------------
    def envelope_for(self, job: Dispatchable) -> Envelope:
        """The envelope ``job`` would be pushed as."""
        return self._dispatcher.envelope_for(job)

    def dispatch(self, job: Dispatchable, *, using: object = None) -> JobHandle | None:
        """Push one job; returns its id as a :class:`~kashq.JobHandle`, or None for a
        unique job already queued. ``using``: the caller's open transaction to write it
        in (``job.dispatch(using=...)``)."""
        return self._dispatcher.dispatch(job, using=using)  # type: ignore[return-value]

    def _handle(self, envelope: Envelope, connection: str | None) -> JobHandle:
        return JobHandle.dispatched(envelope.id, self, connection, envelope.queue)

    def dispatch_many(
        self, jobs: Iterable[Dispatchable], *, using: object = None
    ) -> list[str | None]:
        """Push many jobs, one ``push_many`` per connection; returns their ids in order.

        A unique job whose equal is already queued (or earlier in ``jobs``) is
        skipped: its place in the list holds None. ``using``: as :meth:`dispatch`.
        """
        return self._dispatcher.dispatch_many(jobs, using=using)

    def outbox(self) -> Outbox:
        """The outbox in the database of ``KASHQ_DATABASE_URL`` (:mod:`kashq.outbox`)."""
        with self._lock:
            if self._outbox is None:
                from kashq.outbox import Outbox

                s = self.settings
                self._outbox = Outbox(s.database_url, clock=self.clock, table_prefix=s.table_prefix)
            return self._outbox

    def _put_in_outbox(
        self, connection: str | None, transaction: Transaction, envelopes: Sequence[Envelope]
    ) -> None:
        self.outbox().put_in(transaction, connection or self.settings.connection, envelopes)

    def dispatch_batch(self, batch: PendingBatch) -> Batch:
        """Store a batch, then push its jobs; its :class:`~kashq.Batch` (:func:`kashq.batch`)."""
        record = self._dispatcher.dispatch_batch(batch)
        return self.batch_of(record, batch.connection_name())

    def find_batch(self, batch_id: str, connection: str | None = None) -> Batch | None:
        """Batch ``batch_id`` of ``connection`` as stored now, or None (unknown or pruned)."""
        if not is_job_id(batch_id):  # never sent to a backend that would refuse it
            return None
        record = self.batches(connection).get(batch_id)
        return None if record is None else self.batch_of(record, connection)

    def batch_of(self, record: BatchRecord, connection: str | None) -> Batch:
        """The :class:`~kashq.Batch` handle of ``record``, on ``connection``."""
        from kashq.workflows.batch import Batch

        recorder = self.recorder(connection)
        return Batch(
            record, self.batches(connection), self.connection(connection), self.envelope_for,
            self.clock.time, steps=None if recorder is None else recorder.batch,
            results=lambda: self.results(connection),
        )  # fmt: skip

    def dispatch_chain(self, chain: PendingChain) -> JobHandle:
        """Push a chain's first job, carrying the rest; its handle (see :func:`kashq.chain`)."""
        return self._dispatcher.dispatch_chain(chain)  # type: ignore[return-value]

    def clear(self, queue: str, connection: str | None = None) -> int:
        """Delete every job of ``queue`` on ``connection``; returns how many.

        The unique claims those jobs held are freed, so an equal job can be
        dispatched again at once (not only when the claim expires).
        """
        return self._dispatcher.clear(queue, connection)

    # -- operators' controls ---------------------------------------------
    def cancel(self, job_id: str, connection: str | None = None) -> Cancellation:
        """Cancel job ``job_id`` (see :func:`kashq.cancel`)."""
        return control.cancel(self, job_id, connection)

    def cancel_where(
        self,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        tag: str | None = None,
        connection: str | None = None,
    ) -> list[Cancellation]:
        """Cancel every waiting and running job of ``queue`` / ``job_type`` / ``tag``."""
        return control.cancel_where(
            self, queue=queue, job_type=job_type, tag=tag, connection=connection
        )

    def jobs(self, **filters: Any) -> JobPage:
        """A page of jobs (see :func:`kashq.jobs` for the filters)."""
        return list_jobs(self, **filters)

    def pause(self, queue: str, connection: str | None = None) -> None:
        """Pause ``queue`` on every worker (see :func:`kashq.pause_queue`)."""
        control.pause(self, queue, connection)

    def resume(self, queue: str, connection: str | None = None) -> bool:
        """Resume a paused ``queue``; False if it was not paused."""
        return control.resume(self, queue, connection)

    def paused(self, connection: str | None = None) -> dict[str, float]:
        """Paused queues, each with when it was paused (Unix seconds)."""
        return control.paused(self, connection)

    def close(self) -> None:
        """Flush events and alerts, then close every connection and failed-job store it built.

        A store given to the manager stays open: whoever gave it closes it. The
        failed-job stores stay this manager's (a memory store keeps its
        records); a database store connects again if it is used after.
        """
        with self._lock:
            drivers, self._connections = list(self._connections.values()), {}
            recorders, self._recorders = list(self._recorders.values()), {}
            results, self._results = list(self._results.values()), {}
            recent, self._recent = list(self._recent.values()), {}
            histories, self._history_recorders = list(self._history_recorders.values()), {}
            history_stores, self._histories = list(self._histories.values()), {}
            alerts, self._alerts = self._alerts, []
            outbox, self._outbox = self._outbox, None
            stores = list(self._stores.values())
        for dispatcher in alerts:
            dispatcher.close()
        if outbox is not None:
            outbox.close()
        for recorder in recorders:
            recorder.close()  # before its driver: the store shares the driver's client
        for result_store in results:
            result_store.close()  # before its driver, as the recorders
        for recent_store in recent:
            recent_store.close()
        for history in histories:
            history.close()  # closes its store too
        for history_store in history_stores:
            history_store.close()
        for driver in drivers:
            driver.close()
        for store in stores:
            store.close()
        if self.tracing is not None:
            self.tracing.flush()  # a worker process ends with os._exit: no atexit hook runs


_current_lock = threading.Lock()
_current: QueueManager | None = None


def configure(manager: QueueManager | None = None, **settings: Any) -> QueueManager:
    """Make ``manager`` (or one built from settings plus ``settings`` overrides) current."""
    new = manager or QueueManager(load_settings(origin="kashq.configure()", **settings))
    old = swap_manager(new)
    if old is not None and old is not new:
        old.close()
    return new


def manager() -> QueueManager:
    """The current queue manager, built from settings if none was configured."""
    global _current
    with _current_lock:
        if _current is None:
            _current = QueueManager()
        return _current


def swap_manager(new: QueueManager | None) -> QueueManager | None:
    """Make ``new`` current without closing the old one; returns the old one."""
    global _current
    with _current_lock:
        old, _current = _current, new
    return old
