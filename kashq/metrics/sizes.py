"""``kashq_queue_size`` and ``kashq_queue_paused``: each queue's jobs, asked of the backend
at scrape time.

Queue depth lives in the queue backend, not in any worker, so it is read when
Prometheus scrapes: ready, delayed and reserved from the driver's ``sizes()``,
failed from the failed-job store's ``count()``; ``kashq_queue_paused`` is 1 for
a queue ``queue:pause`` stopped, 0 for the others. A backend that is down costs
its series, never the scrape: the other metrics are served, and one warning
is logged per outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric

from kashq.drivers.base import Driver
from kashq.failed.base import FailedJobStore
from kashq.halts import QUEUE_PREFIX, paused_since

log = logging.getLogger(__name__)

NAME = "kashq_queue_size"
_HELP = "Jobs in each queue, by state: ready, delayed, reserved, failed."
STATES = ("ready", "delayed", "reserved", "failed")
PAUSED_NAME = "kashq_queue_paused"
_PAUSED_HELP = "1 while a queue is paused (queue:pause), else 0."
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Source:
    driver: Driver
    failed_store: FailedJobStore | None
    queues: tuple[str, ...]


class QueueSizeCollector:
    """A prometheus-client collector of ``kashq_queue_size{queue,state}``.

    Reports nothing until :meth:`watch` names a driver. The queues reported
    are those given to :meth:`watch` (even while empty) and every queue the
    driver holds jobs in; failed jobs of other queues are not counted.
    """

    def __init__(self) -> None:
        self._source: _Source | None = None
        self._lock = threading.Lock()
        self._down: set[str] = set()  # what is failing now: "driver", "failed store"

    def watch(
        self,
        driver: Driver,
        failed_store: FailedJobStore | None = None,
        *,
        queues: Sequence[str] = (),
    ) -> QueueSizeCollector:
        """Read sizes from ``driver`` and ``failed_store`` from now on."""
        self._source = _Source(driver, failed_store, tuple(queues))
        return self

    def describe(self) -> list[Metric]:
        """The family this collector yields (so registering it reaches no backend)."""
        return [
            GaugeMetricFamily(NAME, _HELP, labels=("queue", "state")),
            GaugeMetricFamily(PAUSED_NAME, _PAUSED_HELP, labels=("queue",)),
        ]

    def collect(self) -> Iterator[Metric]:
        source = self._source
        if source is None:
            return
        family = GaugeMetricFamily(NAME, _HELP, labels=("queue", "state"))
        paused = self._ask("driver", lambda: paused_since(source.driver.get_control(QUEUE_PREFIX)))
        found = self._ask("driver", lambda: _names(source, paused or {}))
        names = list(source.queues) if found is None else found
        sizes = None if found is None else self._ask("driver", lambda: source.driver.sizes(names))
        if sizes is not None:
            for name in names:
                size = sizes.get(name)
                family.add_metric([name, "ready"], size.ready if size else 0)
                family.add_metric([name, "delayed"], size.delayed if size else 0)
                family.add_metric([name, "reserved"], size.reserved if size else 0)
        store = source.failed_store
        if store is not None:
            failed = self._ask("failed store", lambda: {n: store.count(queue=n) for n in names})
            for name, count in (failed or {}).items():
                family.add_metric([name, "failed"], count)
        yield family
        if paused is not None:
            flags = GaugeMetricFamily(PAUSED_NAME, _PAUSED_HELP, labels=("queue",))
            for name in names:
                flags.add_metric([name], 1 if name in paused else 0)
            yield flags

    def _ask(self, what: str, question: Callable[[], _T]) -> _T | None:
        """``question()``, or None (logged once per outage) if the backend fails."""
        try:
            answer = question()
        except Exception as exc:  # a KashqError when down; anything else must not fail scrapes
            with self._lock:
                first = what not in self._down
                self._down.add(what)
            if first:
                log.warning(
                    "metrics: the %s is unreachable (%s); queue sizes from it are left "
                    "out of scrapes until it is back",
                    what,
                    exc,
                )
            return None
        with self._lock:
            back = what in self._down
            self._down.discard(what)
        if back:
            log.warning("metrics: the %s is reachable again; queue sizes are back", what)
        return answer


def _names(source: _Source, paused: Iterable[str]) -> list[str]:
    """The watched queues, then every other queue the driver holds jobs in or paused."""
    given = list(source.queues)
    return given + sorted((set(source.driver.queue_names()) | set(paused)) - set(given))
