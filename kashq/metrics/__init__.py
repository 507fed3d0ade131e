"""Prometheus metrics: what kashq's workers and dispatchers count, and the ``/metrics`` endpoint.

Workers built by the queue manager (``queue:work``, :func:`kashq.start_workers`)
and every ``dispatch`` record into :data:`DefaultMetrics` (prometheus-client's
global registry) on their own:

==================================  =========================  ==========================
metric                              labels                     what
==================================  =========================  ==========================
``kashq_jobs_processed_total``      queue, job_type, status    attempts that ended:
                                                               completed, failed, released
``kashq_jobs_dispatched_total``     queue, job_type            jobs pushed
``kashq_job_duration_seconds``      queue, job_type            ``handle()`` run time
``kashq_job_wait_seconds``          queue, job_type            available → started
``kashq_queue_size``                queue, state               ready, delayed, reserved,
                                                               failed (read at scrape time)
``kashq_workers``                                              live worker threads/processes
``kashq_lease_reclaims_total``      queue                      jobs handed out again after
                                                               their worker vanished
==================================  =========================  ==========================

The helpers below are for code that is not run by a kashq worker (it would
count its jobs twice): ``start = time.perf_counter()`` … ``observe_job_duration(start)``
then ``job_completed()`` or ``job_failed()``.
"""

from __future__ import annotations

from kashq.metrics.core import (
    DEFAULT_QUEUE,
    DURATION_BUCKETS,
    MANUAL_JOB_TYPE,
    METRIC_NAMES,
    WAIT_BUCKETS,
    DefaultMetrics,
    Metrics,
)
from kashq.metrics.endpoint import MetricsEndpoint
from kashq.metrics.sizes import QueueSizeCollector


def observe_job_duration(
    start: float, *, queue: str = DEFAULT_QUEUE, job_type: str = MANUAL_JOB_TYPE
) -> float:
    """Record the seconds since ``start`` (a ``time.perf_counter()`` reading); returns them."""
    return DefaultMetrics.observe_job_duration(start, queue=queue, job_type=job_type)


def job_completed(*, queue: str = DEFAULT_QUEUE, job_type: str = MANUAL_JOB_TYPE) -> None:
    """Count one completed job in :data:`DefaultMetrics`."""
    DefaultMetrics.job_completed(queue=queue, job_type=job_type)


def job_failed(*, queue: str = DEFAULT_QUEUE, job_type: str = MANUAL_JOB_TYPE) -> None:
    """Count one job failed for good in :data:`DefaultMetrics`."""
    DefaultMetrics.job_failed(queue=queue, job_type=job_type)


__all__ = [
    "DEFAULT_QUEUE",
    "DURATION_BUCKETS",
    "MANUAL_JOB_TYPE",
    "METRIC_NAMES",
    "WAIT_BUCKETS",
    "DefaultMetrics",
    "Metrics",
    "MetricsEndpoint",
    "QueueSizeCollector",
    "job_completed",
    "job_failed",
    "observe_job_duration",
]
