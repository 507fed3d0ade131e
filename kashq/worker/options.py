"""Worker options (Laravel's ``WorkerOptions``): one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from kashq.names import check_queue_name
from kashq.retry import DEFAULT_BACKOFF, Backoff, backoff_of
from kashq.worker.prefetch import default_prefetch


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker consumes. Job-level options in the envelope win over these.

    ``tries``, ``backoff`` and ``timeout_s`` are defaults for jobs that do
    not set their own; ``backoff`` takes what a job's ``backoff`` takes
    (seconds, a list of seconds, an :class:`~kashq.Exponential`). ``lease_s``
    is how long a reservation lasts without a heartbeat. ``sleep_s`` is how
    long an idle worker blocks waiting for a job in one go (a pushed job
    wakes it at once); it is also the longest an idle worker takes to notice
    ``stop()`` or a limit. ``park_s`` is the delay before retrying to record a
    failure when the failed-job store is unreachable. ``prefetch`` is the most
    jobs one reserve takes while jobs are short (1: one at a time; 0, the
    default: the connection's, 64 on ``database`` and 8 elsewhere); see
    :mod:`kashq.worker.prefetch`. ``result_ttl_s`` is how long outcomes are
    kept for jobs that set no ``result_ttl`` (0: none). ``cancel_grace_s`` is how
    long a cancelled running job has to stop at a check (``self.cancelled()``,
    ``self.progress()``, an ``await``) before a ``queue:work`` process kills it.
    """

    connection: str = "memory"
    queues: tuple[str, ...] = ("default",)
    tries: int = 3
    backoff: Backoff = DEFAULT_BACKOFF
    timeout_s: float | None = 25.0
    lease_s: float = 30.0
    sleep_s: float = 1.0
    max_jobs: int | None = None
    max_time_s: float | None = None
    stop_when_empty: bool = False
    park_s: float = 5.0
    prefetch: int = 0
    result_ttl_s: float = 86_400.0
    cancel_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.queues, str) or not self.queues:
            raise ValueError(f"queues must be a non-empty sequence of names, got {self.queues!r}")
        for queue in self.queues:
            check_queue_name(queue)
        object.__setattr__(self, "backoff", backoff_of(self.backoff))
        if self.prefetch == 0:
            object.__setattr__(self, "prefetch", default_prefetch(self.connection))
