"""The sync driver: runs each job in the caller as soon as it is dispatched.

For tests and scripts. Delays are ignored (the job runs now); failures follow
the same retry rules as a worker, sleeping the backoff in the caller, and jobs
that fail for good go to the failed-job store. The driver itself runs no user
code: it keeps jobs in a private :class:`MemoryDriver` and hands them to the
``drain`` function its builder supplies (a :class:`kashq.Worker`'s ``drain``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.base import (
    ONCE_KEEP_S,
    Cleared,
    Driver,
    FoundJob,
    JobListing,
    JobState,
    QueueSizes,
    Reservation,
    Storage,
)
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope

T = TypeVar("T")
DrainFn = Callable[[Driver, Sequence[str]], None]


class SyncDriver:
    """Processes pushed jobs immediately through ``drain(driver, queues)``."""

    def __init__(self, drain: DrainFn, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._inner = MemoryDriver(clock=clock)
        self._drain = drain
        self._clock = clock
        self._queues: dict[str, None] = {}  # insertion-ordered set
        self._lock = threading.RLock()
        self._draining = False

    @property
    def storage(self) -> Storage:
        return Storage("memory", self, clock=self._clock)

    def push(self, envelope: Envelope) -> None:
        self.push_many((envelope,))

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        self._push_and_run(envelopes, self._inner.push_many)

    def push_once(self, envelope: Envelope, keep_s: float = ONCE_KEEP_S) -> bool:
        return self._push_and_run((envelope,), lambda now: self._inner.push_once(now[0], keep_s))

    def _push_and_run(
        self, envelopes: Sequence[Envelope], push: Callable[[list[Envelope]], T]
    ) -> T:
        """``push`` the jobs, made due now, then run them (unless a drain is under way)."""
        # One thread drains at a time, so a dispatch returns only after its own
        # jobs ran (another thread's drain never runs them, nor returns early).
        with self._lock:
            now = self._clock.time()
            pushed = push([dataclasses.replace(e, available_at=now) for e in envelopes])
            for env in envelopes:
                self._queues.setdefault(env.queue)
            if self._draining:
                return pushed  # dispatched from a running job: the drain under way picks it up
            self._draining = True
            try:
                while self._pending():
                    self._drain(self._inner, self._names())
            finally:
                self._draining = False
            return pushed

    def _names(self) -> list[str]:
        """Every queue seen so far: dispatched to, or given a job by a worker (a chain's
        next step is pushed by the worker, straight to the private driver)."""
        return list(dict.fromkeys([*self._queues, *self._inner.queue_names()]))

    def _pending(self) -> bool:
        """Whether any queue seen so far still has work (nested dispatches add queues)."""
        sizes = self._inner.sizes(self._names()).values()
        return any(s.ready or s.delayed for s in sizes)

    def reserve(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        ack: Reservation | None = None,
    ) -> Reservation | None:
        return self._inner.reserve(queues, lease_s=lease_s, wait_s=wait_s, ack=ack)

    def ack(self, reservation: Reservation) -> None:
        self._inner.ack(reservation)

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        self._inner.release(reservation, envelope)

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        return self._inner.extend(reservation, lease_s)

    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        return self._inner.sizes(queues)

    def queue_names(self) -> list[str]:
        return self._inner.queue_names()

    def find(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """The job as the private memory driver holds it: a job runs before its dispatch
        returns, so this sees one only while it runs (reserved) or waits behind others."""
        return self._inner.find(job_id, queues)

    def remove(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """Take a job out of the private memory driver: only one still waiting behind others
        (dispatched by a running job, say) is there to remove; a running one is reserved."""
        return self._inner.remove(job_id, queues)

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        limit: int = 50,
        cursor: str | None = None,
        tag: str | None = None,
    ) -> JobListing:
        """The private memory driver's listing: like :meth:`find`, it sees a job only while
        it runs (reserved) or waits behind others."""
        return self._inner.list_jobs(queue, state, limit=limit, cursor=cursor, tag=tag)

    def oldest_ready(self, queues: Sequence[str]) -> dict[str, float | None]:
        return self._inner.oldest_ready(queues)

    def clear(self, queue: str) -> Cleared:
        return self._inner.clear(queue)

    def put_control(self, name: str, value: str, ttl_s: float | None = None) -> None:
        self._inner.put_control(name, value, ttl_s)

    def get_control(self, prefix: str = "") -> dict[str, str]:
        return self._inner.get_control(prefix)

    def delete_control(self, name: str) -> bool:
        return self._inner.delete_control(name)

    def close(self) -> None:
        self._inner.close()
