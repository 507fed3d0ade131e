"""How many jobs this process dispatched, for ``kashq_jobs_dispatched_total``.

Dispatching does not load prometheus-client. A process that uses Prometheus
(``prometheus_client`` imported, or its multiprocess directory set when the
process first dispatches) counts straight into
:data:`kashq.metrics.DefaultMetrics`. Any other keeps one count per (queue,
job type) here, and hands them over when :mod:`kashq.metrics` loads; from
then on that counts.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Protocol

from kashq.envelope import Envelope

# prometheus-client's multiprocess mode, chosen by the environment the process started with.
_MULTIPROCESS_VARS = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


class Sink(Protocol):
    """Where dispatch counts go once Prometheus is loaded: kashq's default metrics."""

    def dispatched(self, envelopes: Sequence[Envelope]) -> None:
        """Count ``envelopes`` as pushed."""
        ...

    def add_dispatched(self, queue: str, job_type: str, count: int) -> None:
        """Count ``count`` jobs of ``job_type`` as pushed to ``queue``."""
        ...


_lock = threading.Lock()
_sink: Sink | None = None
_kept: dict[tuple[str, str], int] = {}
_multiprocess: bool | None = None


def count(envelopes: Sequence[Envelope]) -> None:
    """Count ``envelopes`` as pushed to their queues."""
    sink = _sink
    if sink is None and _uses_prometheus():
        import kashq.metrics  # noqa: F401  # its default metrics take over as they load

        sink = _sink
    if sink is None:
        with _lock:
            sink = _sink
            if sink is None:
                for envelope in envelopes:
                    key = (envelope.queue, envelope.type)
                    _kept[key] = _kept.get(key, 0) + 1
                return
    sink.dispatched(envelopes)


def take_over(sink: Sink) -> None:
    """Make ``sink`` count from now on, handing it the counts kept so far."""
    global _sink
    with _lock:
        kept = dict(_kept)
        _kept.clear()
        _sink = sink
    for (queue, job_type), n in kept.items():
        sink.add_dispatched(queue, job_type, n)


def _uses_prometheus() -> bool:
    global _multiprocess
    if "prometheus_client" in sys.modules:
        return True
    if _multiprocess is None:  # read once, at the first dispatch: os.environ is slow to ask
        _multiprocess = any(v in os.environ for v in _MULTIPROCESS_VARS)
    return _multiprocess
