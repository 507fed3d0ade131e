"""What the web framework helpers share: the check of a mount path, the metrics endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kashq.manager import QueueManager
    from kashq.metrics.endpoint import MetricsEndpoint


def metrics_endpoint(manager: QueueManager) -> MetricsEndpoint:
    """Prometheus text (an ASGI and WSGI app) with the queue sizes of ``manager``'s
    default connection and queue."""
    from kashq.metrics import DefaultMetrics

    name = manager.settings.connection
    DefaultMetrics.collect_queue_sizes(
        manager.connection(name), manager.failed_store(name), queues=(manager.settings.queue,)
    )
    return DefaultMetrics.handler()


def mount_path(path: str) -> str:
    """``path`` checked: a mount point starts with ``/`` and is not the root."""
    if not path.startswith("/") or path.rstrip("/") == "":
        raise ValueError(f"a kashq mount path starts with / and is not the root, got {path!r}")
    return path.rstrip("/")
