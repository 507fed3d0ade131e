"""The metrics kashq exports, and the worker listener that keeps them up to date.

:class:`Metrics` owns one set of Prometheus metrics on one registry.
:meth:`Metrics.listener` is a worker listener that runs once per job step at
up to tens of thousands of steps a second, so it looks up the labelled
children of a ``(queue, job_type)`` pair once and keeps them in a dict; a job
step then costs a dict lookup and an ``inc()`` or ``observe()``.

The label that names the job class is ``job_type``, not ``job``: Prometheus
gives every scraped series a ``job`` label of its own (the scrape job) and
would rename ours to ``exported_job``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, values

from kashq import dispatch_counts
from kashq.envelope import Envelope
from kashq.jobevents import EventKind, JobEvent
from kashq.metrics.sizes import QueueSizeCollector

if TYPE_CHECKING:
    from kashq.drivers.base import Driver
    from kashq.failed.base import FailedJobStore
    from kashq.metrics.endpoint import MetricsEndpoint
    from kashq.worker.worker import Worker

DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
"""Seconds: from 1 ms jobs to ten-minute ones (anything longer lands in ``+Inf``)."""

WAIT_BUCKETS = (*DURATION_BUCKETS, 1800.0, 3600.0)
"""Seconds: a backlog can keep a job waiting for an hour."""

METRIC_NAMES = frozenset(
    {
        "kashq_jobs_processed_total",
        "kashq_jobs_dispatched_total",
        "kashq_job_duration_seconds",
        "kashq_job_wait_seconds",
        "kashq_queue_size",
        "kashq_queue_paused",
        "kashq_workers",
        "kashq_lease_reclaims_total",
    }
)
"""Every metric kashq exports (histograms add ``_bucket``, ``_sum`` and ``_count``)."""

DEFAULT_QUEUE = "default"
MANUAL_JOB_TYPE = "manual"  # the job_type of steps recorded by hand, unless given
COMPLETED, FAILED, RELEASED = "completed", "failed", "released"
CANCELLED, EXPIRED = "cancelled", "expired"

_STARTED, _RAN, _COMPLETED = EventKind.STARTED, EventKind.RAN, EventKind.COMPLETED
_RETRIED, _FAILED = EventKind.RETRIED, EventKind.FAILED
_IDLE, _PARKED, _ABORTING = EventKind.IDLE, EventKind.PARKED, EventKind.ABORTING


class _Children:
    """The labelled children of one ``(queue, job_type)``, as bound methods."""

    __slots__ = ("completed", "duration", "failed", "reclaimed", "released", "wait")

    def __init__(self, metrics: Metrics, queue: str, job_type: str) -> None:
        processed = metrics.processed
        self.completed = processed.labels(queue, job_type, COMPLETED).inc
        self.failed = processed.labels(queue, job_type, FAILED).inc
        self.released = processed.labels(queue, job_type, RELEASED).inc
        self.duration = metrics.duration.labels(queue, job_type).observe
        self.wait = metrics.wait.labels(queue, job_type).observe
        self.reclaimed = metrics.reclaims.labels(queue).inc


class Metrics:
    """kashq's Prometheus metrics on ``registry`` (default: prometheus-client's global one).

    Give each test its own ``CollectorRegistry``: a registry holds one metric
    of each name. Under prometheus-client's multiprocess mode
    (``PROMETHEUS_MULTIPROC_DIR`` set before the process started) the values
    live in files that a scrape sums across processes — see :meth:`handler`.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        # The value class prometheus-client picked at import, from PROMETHEUS_MULTIPROC_DIR.
        self.multiprocess: bool = getattr(values.ValueClass, "_multiprocess", False)
        labels = ("queue", "job_type")
        self.processed = Counter(
            "kashq_jobs_processed_total",
            "Job attempts that ended, by status: completed, failed (for good), "
            "released (put back for a retry or by a middleware), cancelled or expired.",
            (*labels, "status"),
            registry=registry,
        )
        self.dispatched_total = Counter(
            "kashq_jobs_dispatched_total", "Jobs pushed to a queue.", labels, registry=registry
        )
        self.duration = Histogram(
            "kashq_job_duration_seconds",
            "How long handle() ran, in seconds.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "kashq_job_wait_seconds",
            "Seconds from when a job became available (dispatched, or its delay or "
            "backoff over) to when handle() started.",
            labels,
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.workers = Gauge(
            "kashq_workers",
            "Worker threads consuming jobs (under queue:work: worker processes).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.reclaims = Counter(
            "kashq_lease_reclaims_total",
            "Jobs handed out again because the worker holding them vanished.",
            ("queue",),
            registry=registry,
        )
        self._children: dict[tuple[str, str], _Children] = {}
        self._dispatch_children: dict[tuple[str, str], Counter] = {}
        self._watched: weakref.WeakSet[Worker] = weakref.WeakSet()
        self._watch_lock = threading.Lock()
        self.sizes = QueueSizeCollector()
        registry.register(self.sizes)
        if not self.multiprocess:  # files cannot hold a callback: see worker_process()
            self.workers.set_function(self._live_threads)

    # -- the worker's hot path ----------------------------------------------
    def listener(self, event: JobEvent) -> None:
        """A worker listener: count the step ``event`` is about."""
        kind = event.kind
        if kind is _IDLE or kind is _PARKED or kind is _ABORTING:
            return  # a parked job is counted once its failure is recorded (FAILED)
        key = (event.queue, event.job_type)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = _Children(self, *key)
        if kind is _RAN:
            if event.duration_s is not None:
                children.duration(event.duration_s)
        elif kind is _COMPLETED:
            children.completed()
        elif kind is _STARTED:
            env, res = event.envelope, event.reservation
            if env is not None:
                children.wait(max(event.at - env.available_at, 0.0))
            if res is not None and res.deliveries > 1:
                children.reclaimed()
        elif kind is _RETRIED:
            children.released()
        elif kind is _FAILED:
            children.failed()
        elif kind is EventKind.CANCELLED or kind is EventKind.EXPIRED:  # rare: series made on use
            status = CANCELLED if kind is EventKind.CANCELLED else EXPIRED
            self.processed.labels(event.queue, event.job_type, status).inc()

    def attach(self, worker: Worker) -> None:
        """Record ``worker``'s jobs, and count its threads in ``kashq_workers`` while they run."""
        worker.add_listener(self.listener)
        with self._watch_lock:
            self._watched.add(worker)

    def _live_threads(self) -> float:
        with self._watch_lock:
            workers = list(self._watched)
        return float(sum(worker.active_threads for worker in workers))

    @contextmanager
    def worker_process(self, threads: int = 1) -> Iterator[None]:
        """Count this process's ``threads`` in ``kashq_workers`` while the block runs.

        For a worker process under multiprocess mode (``queue:work
        --metrics-port``), where the gauge is a file the supervisor sums over
        live processes. Otherwise the threads of attached workers are counted
        as they run, and this does nothing.
        """
        if not self.multiprocess:
            yield
            return
        self.workers.inc(threads)
        try:
            yield
        finally:
            self.workers.dec(threads)

    # -- dispatching -------------------------------------------------------------
    def dispatched(self, envelopes: Sequence[Envelope]) -> None:
        """Count ``envelopes`` as pushed to their queues (one ``inc`` per queue and type)."""
        if len(envelopes) == 1:
            self._dispatch_child(envelopes[0].queue, envelopes[0].type).inc()
            return
        counts: dict[tuple[str, str], int] = {}
        for envelope in envelopes:
            key = (envelope.queue, envelope.type)
            counts[key] = counts.get(key, 0) + 1
        for (queue, job_type), count in counts.items():
            self._dispatch_child(queue, job_type).inc(count)

    def add_dispatched(self, queue: str, job_type: str, count: int) -> None:
        """Count ``count`` jobs of ``job_type`` as pushed to ``queue``."""
        self._dispatch_child(queue, job_type).inc(count)

    def _dispatch_child(self, queue: str, job_type: str) -> Counter:
        key = (queue, job_type)
        child = self._dispatch_children.get(key)
        if child is None:
            child = self._dispatch_children[key] = self.dispatched_total.labels(queue, job_type)
        return child

    # -- by hand -----------------------------------------------------------------
    def observe_job_duration(
        self, start: float, *, queue: str = DEFAULT_QUEUE, job_type: str = MANUAL_JOB_TYPE
    ) -> float:
        """Record the seconds since ``start`` (a ``time.perf_counter()`` reading); returns them."""
        took_s = time.perf_counter() - start
        self.duration.labels(queue, job_type).observe(took_s)
        return took_s

    def job_completed(self, *, queue: str = DEFAULT_QUEUE, job_type: str = MANUAL_JOB_TYPE) -> None:
        """Count one completed job."""
        self.processed.labels(queue, job_type, COMPLETED).inc()

    def job_failed(self, *, queue: str = DEFAULT_QUEUE, job_type: str = MANUAL_JOB_TYPE) -> None:
        """Count one job failed for good."""
        self.processed.labels(queue, job_type, FAILED).inc()

    # -- scraping ------------------------------------------------------------------
    def collect_queue_sizes(
        self,
        driver: Driver,
        failed_store: FailedJobStore | None = None,
        *,
        queues: Sequence[str] = (),
    ) -> None:
        """Report ``kashq_queue_size`` from ``driver`` (and ``failed_store``) at each scrape.

        Replaces the source given before, if any. ``queues`` are reported even
        while empty; every queue the driver holds jobs in is reported too.
        """
        self.sizes.watch(driver, failed_store, queues=queues)

    def handler(self) -> MetricsEndpoint:
        """The ``/metrics`` endpoint: mount it as a WSGI or as an ASGI application.

        Under multiprocess mode it serves the sum of every process writing to
        ``PROMETHEUS_MULTIPROC_DIR`` (e.g. each gunicorn worker), plus the
        queue sizes given to :meth:`collect_queue_sizes`.
        """
        from kashq.metrics.endpoint import MetricsEndpoint

        if not self.multiprocess:
            return MetricsEndpoint(self.registry)
        from kashq.metrics.multiprocess import multiprocess_registry

        return MetricsEndpoint(multiprocess_registry(None, self.sizes))


DefaultMetrics = Metrics()
"""kashq's metrics on prometheus-client's global registry; workers and dispatches record into it."""

dispatch_counts.take_over(DefaultMetrics)  # with what this process dispatched before it loaded
