"""The queue manager: named connections built from settings, and dispatching.

This is Laravel's ``QueueManager``. It is built explicitly (``kashq.configure``)
or, the first time a job is dispatched, from the settings (config file, .env,
``KASHQ_*``): connections are resolved at dispatch time, never bound when a job
class is defined. Workers do not use it; they take a driver and a failed-job
store directly.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.config import CONNECTIONS, Settings, load_settings
from kashq.drivers.base import Driver
from kashq.drivers.memory import MemoryDriver
from kashq.drivers.sync import SyncDriver
from kashq.envelope import Envelope
from kashq.exceptions import ConfigError
from kashq.failed.base import FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore
from kashq.job import Dispatchable
from kashq.worker.options import WorkerOptions
from kashq.worker.worker import Worker


class QueueManager:
    """Builds and caches connections; turns jobs into envelopes and pushes them."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        failed_store: FailedJobStore | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.clock = clock
        self._given_store = failed_store
        self._stores: dict[bool, FailedJobStore] = {}  # keyed by "durable"
        self._connections: dict[str, Driver] = {}
        self._lock = threading.Lock()

    # -- connections ----------------------------------------------------
    def connection(self, name: str | None = None) -> Driver:
        """The driver for connection ``name`` (default: ``settings.connection``)."""
        name = name or self.settings.connection
        with self._lock:
            driver = self._connections.get(name)
            if driver is None:
                driver = self._connections[name] = self._build(name)
            return driver

    def failed_store(self, connection: str | None = None) -> FailedJobStore:
        """Where jobs of ``connection`` (default: the default one) that fail for good go.

        The ``failed_jobs`` table at ``KASHQ_DATABASE_URL`` for durable
        connections (database, redis), so a failure outlives the process; in
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

                    store = DatabaseFailedJobStore(self.settings.database_url)
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
        if name == "database":
            from kashq.drivers.database import DatabaseDriver

            return DatabaseDriver(self.settings.database_url, clock=self.clock)
        raise ConfigError(f"unknown connection {name!r}: expected one of {', '.join(CONNECTIONS)}")

    def _drain_inline(self, driver: Driver, queues: Sequence[str]) -> None:
        options = self.worker_options(connection="sync", queues=tuple(queues))
        Worker(driver, self.failed_store("sync"), options, clock=self.clock).drain()

    # -- workers --------------------------------------------------------
    def worker_options(self, **overrides: Any) -> WorkerOptions:
        """Worker options from settings, with ``overrides`` (WorkerOptions fields) on top."""
        s = self.settings
        options = WorkerOptions(
            connection=s.connection,
            queues=(s.queue,),
            tries=s.max_retry,
            backoff_s=s.backoff,
            timeout_s=s.timeout,
            lease_s=s.retry_after,
        )
        return dataclasses.replace(options, **overrides)

    def worker(self, connection: str | None = None, **overrides: Any) -> Worker:
        """A :class:`Worker` on ``connection`` using this manager's failed-job store."""
        name = connection or self.settings.connection
        options = self.worker_options(connection=name, **overrides)
        store = self.failed_store(name)
        return Worker(self.connection(name), store, options, clock=self.clock)

    # -- dispatching ----------------------------------------------------
    def envelope_for(self, job: Dispatchable) -> Envelope:
        """The envelope ``job`` would be pushed as."""
        return job.to_envelope(default_queue=self.settings.queue, now=self.clock.time())

    def dispatch(self, job: Dispatchable) -> str:
        """Push one job; returns its id."""
        envelope = self.envelope_for(job)
        self.connection(job.target_connection()).push(envelope)
        return envelope.id

    def dispatch_many(self, jobs: Iterable[Dispatchable]) -> list[str]:
        """Push many jobs, one ``push_many`` per connection; returns their ids in order."""
        by_connection: dict[str | None, list[Envelope]] = {}
        ids: list[str] = []
        for job in jobs:
            envelope = self.envelope_for(job)
            by_connection.setdefault(job.target_connection(), []).append(envelope)
            ids.append(envelope.id)
        for name, envelopes in by_connection.items():
            self.connection(name).push_many(envelopes)
        return ids

    def close(self) -> None:
        """Close every connection this manager opened."""
        with self._lock:
            drivers, self._connections = list(self._connections.values()), {}
        for driver in drivers:
            driver.close()
