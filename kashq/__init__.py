"""kashq: a Laravel-style, batteries-included background job queue for Python.

Subclass :class:`Job`, write ``handle()``, call ``.dispatch()``; run workers
with ``kashq queue:work`` or :func:`start_workers`. The docs (``docs/``, a
mkdocs site) give the tour; everything public is re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kashq._version import __version__
from kashq.alerts import (
    Alert,
    AlertDispatcher,
    Alerter,
    AlertError,
    LogAlerter,
    SlackAlerter,
    WebhookAlerter,
)
from kashq.clock import SYSTEM_CLOCK, Clock, SystemClock
from kashq.config import Settings, load_settings
from kashq.control import Cancellation
from kashq.dispatcher import (
    adispatch_many,
    dispatch,
    dispatch_after,
    dispatch_at,
    dispatch_many,
)
from kashq.dlq import DeadLetterError, DeadLetterQueue, RetryError
from kashq.drivers import Driver, MemoryDriver, QueueSizes, Reservation, SyncDriver
from kashq.envelope import Envelope
from kashq.exceptions import (
    ConfigError,
    DriverError,
    EnvelopeError,
    FailedStoreError,
    FailJob,
    ImportFailed,
    JobCancelled,
    JobDefinitionError,
    JobTimeout,
    KashqError,
    PayloadError,
    RegistryError,
    UnknownJobType,
)
from kashq.failed import FailedJob, FailedJobStore, MemoryFailedJobStore
from kashq.job import Job, NamedJob
from kashq.listing import JobPage, JobSummary
from kashq.locks import LockNotAcquired
from kashq.manager import QueueManager, configure, manager
from kashq.middleware import (
    JobContext,
    Middleware,
    RateLimited,
    ReleaseJob,
    ThrottlesExceptions,
    WithoutOverlapping,
)
from kashq.registry import handler, register
from kashq.retry import Exponential, StopReason
from kashq.scheduler import ScheduleError, Scheduler, schedule
from kashq.status import (
    JobExpired,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobStatus,
    ResultTimeout,
    get_job,
)
from kashq.worker import (
    EventKind,
    JobEvent,
    Outcome,
    WorkerLost,
    WorkerOptions,
    WorkerStats,
)
from kashq.workflows import Batch, ChainError, PendingBatch, PendingChain, batch, chain

if TYPE_CHECKING:
    from kashq.drivers.sharded.driver import ShardedDriver
    from kashq.drivers.sharded.driver import ShardedDriver as ShardedQueue
    from kashq.drivers.sharded.strategy import ShardStrategy
    from kashq.worker.worker import Worker

_LAZY = {  # name: (module, attribute)
    "ShardStrategy": ("kashq.drivers.sharded.strategy", "ShardStrategy"),
    "ShardedDriver": ("kashq.drivers.sharded.driver", "ShardedDriver"),
    "ShardedQueue": ("kashq.drivers.sharded.driver", "ShardedDriver"),  # its earlier name
    "Worker": ("kashq.worker.worker", "Worker"),
}


def __getattr__(name: str) -> Any:
    # The sharded driver loads redis-py only when used (memory users never need it);
    # the worker loads with the first worker (a process that only dispatches never needs it).
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, attribute = where
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def failed_jobs() -> FailedJobStore:
    """The current manager's failed-job store (Kashvi's ``queue.FailedJobs()``)."""
    return manager().failed_store()


def cancel(job_id: str, connection: str | None = None) -> Cancellation:
    """Cancel job ``job_id``: taken off its queue if it waits (it never runs), stopped if
    a worker runs it (:class:`JobCancelled` at its next check, killed after
    ``KASHQ_CANCEL_GRACE`` under ``queue:work``). The :class:`Cancellation` says which."""
    return manager().cancel(job_id, connection)


def find_batch(batch_id: str, connection: str | None = None) -> Batch | None:
    """Batch ``batch_id`` as stored now (see :func:`kashq.batch`), or None if unknown."""
    return manager().find_batch(batch_id, connection)


def jobs(
    *,
    queue: str | None = None,
    state: str = "ready",
    type: str | None = None,
    tag: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    connection: str | None = None,
) -> JobPage:
    """A page of jobs in ``state`` (``ready``, ``delayed``, ``reserved``, ``running``,
    ``failed``, ``completed``, ``cancelled``, ``expired``), of ``queue`` (default: every
    queue), ``type`` and ``tag``; ``page.cursor`` gives the next page (None: the last).
    Nothing scans a whole queue (see :mod:`kashq.listing`)."""
    return manager().jobs(
        queue=queue, state=state, job_type=type, tag=tag, limit=limit, cursor=cursor,
        connection=connection,
    )  # fmt: skip


def pause_queue(queue: str, connection: str | None = None) -> None:
    """Pause ``queue`` (``queue:pause``): every worker stops taking its jobs within about a
    second and finishes those it holds; dispatching goes on. Lasts until resumed."""
    manager().pause(queue, connection)


def resume_queue(queue: str, connection: str | None = None) -> bool:
    """Resume a paused ``queue`` (``queue:continue``); False if it was not paused."""
    return manager().resume(queue, connection)


def paused_queues(connection: str | None = None) -> dict[str, float]:
    """The paused queues of ``connection``, each with when it was paused (Unix seconds)."""
    return manager().paused(connection)


def start_workers(concurrency: int = 1, *, connection: str | None = None, **options: Any) -> Worker:
    """Start ``concurrency`` worker threads in this process on the current manager.

    Needed for the memory driver, whose jobs live in this process. ``options``
    are :class:`WorkerOptions` fields (``queues=("high", "default")`` ...).
    Returns the running :class:`Worker`; call ``stop()`` on it to finish.
    """
    return manager().worker(connection, **options).start(concurrency)


__all__ = [
    "SYSTEM_CLOCK",
    "Alert",
    "AlertDispatcher",
    "AlertError",
    "Alerter",
    "Batch",
    "Cancellation",
    "ChainError",
    "Clock",
    "ConfigError",
    "DeadLetterError",
    "DeadLetterQueue",
    "Driver",
    "DriverError",
    "Envelope",
    "EnvelopeError",
    "EventKind",
    "Exponential",
    "FailJob",
    "FailedJob",
    "FailedJobStore",
    "FailedStoreError",
    "ImportFailed",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobDefinitionError",
    "JobEvent",
    "JobExpired",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobPage",
    "JobStatus",
    "JobSummary",
    "JobTimeout",
    "KashqError",
    "LockNotAcquired",
    "LogAlerter",
    "MemoryDriver",
    "MemoryFailedJobStore",
    "Middleware",
    "NamedJob",
    "Outcome",
    "PayloadError",
    "PendingBatch",
    "PendingChain",
    "QueueManager",
    "QueueSizes",
    "RateLimited",
    "RegistryError",
    "ReleaseJob",
    "Reservation",
    "ResultTimeout",
    "RetryError",
    "ScheduleError",
    "Scheduler",
    "Settings",
    "ShardStrategy",
    "ShardedDriver",
    "ShardedQueue",
    "SlackAlerter",
    "StopReason",
    "SyncDriver",
    "SystemClock",
    "ThrottlesExceptions",
    "UnknownJobType",
    "WebhookAlerter",
    "WithoutOverlapping",
    "Worker",
    "WorkerLost",
    "WorkerOptions",
    "WorkerStats",
    "__version__",
    "adispatch_many",
    "batch",
    "cancel",
    "chain",
    "configure",
    "dispatch",
    "dispatch_after",
    "dispatch_at",
    "dispatch_many",
    "failed_jobs",
    "find_batch",
    "get_job",
    "handler",
    "jobs",
    "load_settings",
    "manager",
    "pause_queue",
    "paused_queues",
    "register",
    "resume_queue",
    "schedule",
    "start_workers",
]
