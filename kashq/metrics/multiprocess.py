"""Metrics of many worker processes, summed: the ``queue:work --metrics-port`` server.

prometheus-client's multiprocess mode keeps each process's values in files
under ``PROMETHEUS_MULTIPROC_DIR`` (set before the process starts); a scrape
reads every file and sums. :class:`SupervisorMetrics` is the supervisor's
side: it makes a private directory, gives it to each worker process it starts
(:meth:`~SupervisorMetrics.environment`), serves ``/metrics`` from a thread of
its own — so neither the HTTP server nor the scrape-time queue-size queries
touch the supervisor's loop — forgets the live gauges of worker processes that
exited, and removes the directory when it is closed.

Counters and histograms of exited processes stay in the directory and keep
counting (a recycled worker's jobs are not lost from the totals); a long run
that recycles workers often (``--max-jobs``) accumulates a few small files per
process, which each scrape reads.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import weakref
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from kashq.exceptions import ConfigError
from kashq.metrics.sizes import QueueSizeCollector

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_registry(
    directory: str | None, sizes: QueueSizeCollector | None = None
) -> CollectorRegistry:
    """A registry summing the metrics every process writes to ``directory``.

    ``None`` means ``$PROMETHEUS_MULTIPROC_DIR``. ``sizes`` adds
    ``kashq_queue_size``, read from the backend at scrape time.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    if sizes is not None:
        registry.register(sizes)
    return registry


class SupervisorMetrics:
    """Serves ``/metrics`` for every worker process of one supervisor, on ``host:port``.

    Binding happens here: a port in use or a host that does not resolve
    raises :class:`~kashq.exceptions.ConfigError` (one line).
    """

    def __init__(self, sizes: QueueSizeCollector, *, host: str = "127.0.0.1", port: int) -> None:
        self.directory = tempfile.mkdtemp(prefix="kashq-metrics-")
        self.host, self.port = host, port
        try:
            registry = multiprocess_registry(self.directory, sizes)
            self._server, self._thread = _serve(registry, host, port)
        except BaseException as exc:
            shutil.rmtree(self.directory, ignore_errors=True)
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
                raise ConfigError(f"cannot serve metrics on {host}:{port}: {reason}") from None
            raise
        # Removes the directory at exit even if close() is never reached.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def environment(self) -> dict[str, str]:
        """What a worker process's environment needs so its metrics reach this server."""
        return {ENV_VAR: self.directory}

    def exited(self, pid: int) -> None:
        """Forget the live gauges of worker process ``pid``, which exited.

        Called as soon as the process is reaped, before another process can
        be given its pid; it only deletes a small local file.
        """
        with contextlib.suppress(OSError):  # the supervisor's loop must go on regardless
            mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Stop serving and remove the directory."""
        if not self._cleanup.alive:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
        self._cleanup()


def _serve(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """prometheus-client's threaded WSGI server on ``host:port``, started in a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    thread.name = "kashq-metrics-server"
    return server, thread
