"""Jobs a consumer thread reserved ahead of the one it is running.

A worker that finds its jobs short takes several per round trip (the
``prefetch`` option): the first runs at once, the others wait here. Their
leases run from the reserve and are not renewed while they wait; a job taken
from here after a third of a lease has its lease renewed first, and is
skipped if it was lost to another worker meanwhile. When the job running
ahead of them takes long, the worker's watcher gives them back to the queue
(:meth:`PrefetchedJobs.give_back`), in their places and uncounted, so another
worker can run them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from kashq.drivers.base import BatchReserving, Driver, Reservation
from kashq.exceptions import DriverError

log = logging.getLogger(__name__)

PREFETCH = 8
"""The most jobs one reserve takes by default on Redis (a round trip costs about 0.1 ms)."""
DATABASE_PREFETCH = 64
"""The same on the database connection, whose claim costs a transaction (0.5 ms or more)."""
PREFETCH_BUDGET_S = 0.005
"""How much work, judged by the last job's duration, a consumer holds ahead of its job."""
HAND_BACK_AFTER_S = 0.1
"""A job running longer than this makes its consumer give the jobs waiting behind it back."""
WATCH_EVERY_S = 0.05
"""How often the watcher looks for jobs waiting behind a long one."""


def default_prefetch(connection: str) -> int:
    """How many jobs one reserve takes at most on ``connection`` when nothing says."""
    return DATABASE_PREFETCH if connection == "database" else PREFETCH


def batch_size(prefetch: int, last_job_s: float | None) -> int:
    """How many jobs to reserve next: ``prefetch`` for short jobs, fewer as they grow.

    One at first, before a job has shown how long jobs take.
    """
    if prefetch <= 1 or last_job_s is None:
        return 1
    return max(1, min(prefetch, int(PREFETCH_BUDGET_S / max(last_job_s, 1e-6))))


class Holdings(Protocol):
    """Where a worker with one consumer thread records what it reserves (``queue:work``:
    its supervisor's slot), so that if its process dies, the one started in its place
    acknowledges the completed jobs and gives the waiting ones back at once.

    The jobs completed meanwhile are told by the worker's COMPLETED events.
    """

    def reserved(self, batch: Sequence[Reservation], completed: Sequence[Reservation] = ()) -> None:
        """A reserve returned ``batch`` (maybe empty), acknowledging the completed jobs
        but ``completed`` (still held: acknowledged later)."""
        ...

    def taking(self, res: Reservation) -> None:
        """``res``, one of the last batch, runs next (it and those before it wait no more)."""
        ...


class PrefetchedJobs:
    """One consumer thread's waiting jobs, and when its running job started."""

    def __init__(self) -> None:
        self._jobs: deque[tuple[Reservation, float]] = deque()
        self._lock = threading.Lock()
        self.running_since: float | None = None  # time.monotonic() when the running job started

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def hold(self, reservations: Sequence[Reservation]) -> None:
        now = time.monotonic()
        with self._lock:
            self._jobs.extend((res, now) for res in reservations)

    def take(self) -> tuple[Reservation, float] | None:
        """The next waiting job and how long it has waited (seconds), or None."""
        with self._lock:
            if not self._jobs:
                return None
            res, since = self._jobs.popleft()
        return res, time.monotonic() - since

    def give_back(self) -> list[Reservation]:
        """Every waiting job, removed from here (the caller returns them to the queue)."""
        with self._lock:
            jobs = [res for res, _ in self._jobs]
            self._jobs.clear()
        return jobs

    def stale(self, now: float) -> bool:
        """Jobs wait behind one running for longer than :data:`HAND_BACK_AFTER_S`."""
        since = self.running_since
        return bool(self._jobs) and since is not None and now - since > HAND_BACK_AFTER_S


class Prefetcher:
    """A worker's prefetched jobs: one :class:`PrefetchedJobs` per consumer thread,
    taken with their leases checked, and given back to the queue when not run."""

    def __init__(self, driver: Driver, batches: BatchReserving, lease_s: float) -> None:
        self._driver = driver
        self._batches = batches
        self._lease_s = lease_s
        self._lock = threading.Lock()
        self._held: list[PrefetchedJobs] = []

    def register(self) -> PrefetchedJobs:
        """The waiting jobs of a consumer thread starting now."""
        waiting = PrefetchedJobs()
        with self._lock:
            self._held.append(waiting)
        return waiting

    def unregister(self, waiting: PrefetchedJobs) -> None:
        """A consumer thread ends: its waiting jobs go back to the queue."""
        self.give_back(waiting.give_back())
        with self._lock:
            self._held.remove(waiting)

    def take(self, waiting: PrefetchedJobs) -> Reservation | None:
        """The next job still held in ``waiting``, its lease renewed if it waited a while."""
        lease_s = self._lease_s
        while (taken := waiting.take()) is not None:
            res, waited_s = taken
            if waited_s < lease_s / 3:
                return res
            try:
                if self._driver.extend(res, lease_s):
                    return res
            except DriverError as exc:
                log.warning("could not renew the lease of %s (%s); leaving it", res.id, exc)
        return None

    def watch(self, stopping: threading.Event, consuming: Callable[[], bool]) -> None:
        """Give back jobs waiting behind a job that runs long, for other workers to run,
        until ``stopping`` is set or ``consuming()`` is False."""
        while not stopping.wait(WATCH_EVERY_S) and consuming():
            now = time.monotonic()
            with self._lock:
                stale = [waiting for waiting in self._held if waiting.stale(now)]
            for waiting in stale:
                self.give_back(waiting.give_back())

    def give_back(self, reservations: list[Reservation]) -> None:
        """Return jobs this worker will not run to their queues, uncounted."""
        if not reservations:
            return
        try:
            self._batches.unreserve(reservations)
        except DriverError as exc:  # their leases lapse; they come back uncounted
            log.warning("could not give back %d prefetched job(s) (%s)", len(reservations), exc)
