"""How a consumer thread reserves its next job and sends its acknowledgements.

The acknowledgements of completed jobs ride with the next reserve: one job per
reserve (the database driver acknowledges the last one in the claim's own
statement), or a group per reserve on a driver that prefetches
(:class:`~kashq.drivers.base.BatchReserving`). Completed batch jobs are counted
before their acknowledgements go (:class:`~kashq.worker.batches.BatchCounter`):
by the reserve itself on plain Redis, just before it elsewhere, and on a driver
that takes one job per reserve, a group at a time (up to ``HOLD_JOBS`` jobs or
``HOLD_S`` seconds), so the counts cost one transaction per group.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from kashq.drivers.base import BatchReserving, Driver, Reservation
from kashq.exceptions import DriverError
from kashq.worker.batches import BatchCounter
from kashq.worker.controls import POLL_S, Controls
from kashq.worker.loop import ConsumerLoop, Quota
from kashq.worker.options import WorkerOptions
from kashq.worker.prefetch import Holdings, batch_size
from kashq.worker.settle import Settler

log = logging.getLogger(__name__)


class Fetcher:
    """Reserves for a worker's consumer threads and sends their acknowledgements."""

    def __init__(
        self,
        driver: Driver,
        options: WorkerOptions,
        *,
        controls: Controls,
        quota: Quota,
        counts: BatchCounter,
        settler: Settler,
        stopping: threading.Event,
    ) -> None:
        self.driver = driver
        self.options = options
        self._batches = driver if isinstance(driver, BatchReserving) else None
        self._controls = controls
        self._quota = quota
        self._counts = counts
        self._settler = settler
        self._stopping = stopping
        self.holdings: Holdings | None = None  # the worker's (see Worker.track_holdings)

    def fetch(self, loop: ConsumerLoop, wait_s: float) -> Reservation | None:
        """Reserve the next job, acknowledging ``loop``'s completed ones; the jobs
        reserved with it wait in ``loop``."""
        opts = self.options
        acks = loop.acks
        queues = self._controls.active(opts.queues)
        if not queues:  # every queue is paused: send the acks, and wait
            self._counts.flush(acks)
            if acks:
                self.ack_now(acks)
                loop.sent_acks()
            if self.holdings is not None:
                self.holdings.reserved([])
            self._stopping.wait(min(wait_s, POLL_S))
            return None
        if self._batches is None:
            res = self._reserve_one(queues, acks, wait_s)
        else:  # completed batch jobs are counted by the reserve, or just before it
            limit = min(batch_size(opts.prefetch, loop.last_s), self._quota.left(opts.prefetch) + 1)
            found = self._counts.reserve(
                self._batches, queues, acks, lease_s=opts.lease_s, wait_s=wait_s, limit=limit
            )
            if self.holdings is not None:
                self.holdings.reserved(found)
            res = loop.first_of(found)
        loop.sent_acks()
        return res

    def _reserve_one(
        self, queues: Sequence[str], acks: list[Reservation], wait_s: float
    ) -> Reservation | None:
        """Reserve one job, acknowledging the last of ``acks`` with it and the others
        before. Completed batch jobs are held, then counted and acknowledged as a group
        (:meth:`BatchCounter.hold`) once it is full or old, or no job came."""
        counts = self._counts
        held, left_s = counts.hold(acks), counts.hold_left_s()
        if left_s == 0.0:
            self.ack_now(counts.release())
            held, left_s = [], None
        if len(acks) > 1:
            self.ack_now(acks[:-1])
        ack = acks[-1] if acks else None
        wait_s = wait_s if left_s is None else min(wait_s, left_s)
        res = self.driver.reserve(queues, lease_s=self.options.lease_s, wait_s=wait_s, ack=ack)
        if res is None and held:
            self.ack_now(counts.release())
            held = []
        if self.holdings is not None:
            self.holdings.reserved([] if res is None else [res], held)
        return res

    def ack_now(self, reservations: list[Reservation]) -> None:
        """Acknowledge ``reservations`` now: in one call where the driver acknowledges
        several at once (else one by one); a failure leaves them to their leases."""
        if not reservations:
            return
        many = getattr(self._batches or self.driver, "ack_many", None)
        if many is None:
            for res in reservations:
                self._settler.settle(self.driver.ack, res)
            return
        try:
            many(reservations)
        except DriverError as exc:
            log.warning(
                "could not acknowledge %d job(s) (%s); they will be delivered again",
                len(reservations),
                exc,
            )
