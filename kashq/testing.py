"""Test helpers: Laravel's ``Queue::fake()``, a fake clock, and synchronous draining.

``with kashq.testing.fake() as queue:`` records dispatches instead of queueing
them and offers assertions. ``with kashq.testing.memory_queue() as q:`` makes
a fresh in-memory manager with a :class:`FakeClock` current, and ``q.drain()``
runs everything queued (retries included) without waiting in real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kashq import dispatcher as _dispatcher
from kashq.config import load_settings
from kashq.drivers.base import QueueSizes
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope
from kashq.failed.base import FailedJob
from kashq.job import Dispatchable, Job
from kashq.manager import QueueManager, swap_manager
from kashq.manager import manager as current_manager
from kashq.worker.outcome import WorkerStats
from kashq.workflows.batch import Batch, PendingBatch
from kashq.workflows.batches import MemoryBatchStore
from kashq.workflows.chain import PendingChain

JobSelector = type[Job] | str
Predicate = Callable[[Any], bool]
ChainSelector = Any  # a class, a type name, a job, or kashq.PendingBatch (assert_chained)


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass(frozen=True, slots=True)
class Dispatched:
    """One recorded dispatch: the job object and the envelope it would have been."""

    job: Dispatchable
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class DispatchedChain:
    """One recorded chain: its jobs in order, its ``catch`` callbacks, the first job's
    envelope (which carries the rest)."""

    jobs: list[Dispatchable | PendingBatch]
    catch: list[Dispatchable]
    envelope: Envelope


class QueueFake:
    """Records dispatched jobs and asserts about them."""

    def __init__(self, *, default_queue: str = "default") -> None:
        self.records: list[Dispatched] = []
        self.chains: list[DispatchedChain] = []
        self.batches: list[PendingBatch] = []
        self._default_queue = default_queue
        self._lock = threading.Lock()

    # -- Dispatcher protocol ----------------------------------------------
    def dispatch(self, job: Dispatchable, *, using: object = None) -> str:
        envelope = job.to_envelope(default_queue=self._default_queue, now=time.time())
        with self._lock:
            self.records.append(Dispatched(job, envelope))
        return envelope.id

    def dispatch_many(self, jobs: Iterable[Dispatchable], *, using: object = None) -> list[str]:
        return [self.dispatch(job) for job in jobs]

    def dispatch_chain(self, chain: PendingChain) -> str:
        """Record the chain (and its first job as dispatched, as a real dispatch pushes it)."""
        chain.connection_name()  # the same checks as a real dispatch
        envelope = chain.envelopes(
            lambda job: job.to_envelope(default_queue=self._default_queue, now=time.time())
        )
        first = chain.jobs[0]
        with self._lock:
            if isinstance(first, Dispatchable):
                self.records.append(Dispatched(first, envelope))
            self.chains.append(DispatchedChain(list(chain.jobs), list(chain.callbacks), envelope))
        return envelope.id

    def dispatch_batch(self, batch: PendingBatch) -> Batch:
        """Record the batch (its jobs are not recorded as dispatched: they are the batch's);
        the answer is a :class:`~kashq.Batch` over a memory store, as if nothing ran yet."""
        batch.connection_name()  # the same checks as a real dispatch
        driver = MemoryDriver()

        def envelope_for(job: Dispatchable) -> Envelope:
            return job.to_envelope(default_queue=self._default_queue, now=time.time())

        record, _, ids = batch.build(envelope_for, time.time())
        store = MemoryBatchStore()
        store.create(record, ids)
        with self._lock:
            self.batches.append(batch)
        return Batch(record, store, driver, envelope_for, time.time)

    # -- queries --------------------------------------------------------
    def dispatched(
        self, job: JobSelector, predicate: Predicate | None = None, *, queue: str | None = None
    ) -> list[Any]:
        """The dispatched jobs of type ``job`` (a class or a type name) that match."""
        name = _type_name(job)
        return [
            r.job
            for r in list(self.records)
            if r.envelope.type == name
            and (queue is None or r.envelope.queue == queue)
            and (predicate is None or predicate(r.job))
        ]

    # -- assertions -------------------------------------------------------
    def assert_dispatched(
        self, job: JobSelector, predicate: Predicate | None = None, count: int | None = None
    ) -> None:
        """At least one (or exactly ``count``) matching job was dispatched."""
        self._assert_count(job, predicate, count, queue=None)

    def assert_dispatched_on(
        self, queue: str, job: JobSelector, predicate: Predicate | None = None
    ) -> None:
        """A matching job was dispatched onto ``queue``."""
        self._assert_count(job, predicate, None, queue=queue)

    def assert_not_dispatched(self, job: JobSelector, predicate: Predicate | None = None) -> None:
        """No matching job was dispatched."""
        found = self.dispatched(job, predicate)
        if found:
            raise AssertionError(
                f"Expected {_type_name(job)} not to be dispatched"
                f"{_matching(predicate)}, but it was dispatched {_times(len(found))}: "
                + ", ".join(repr(j) for j in found[:5])
            )

    def assert_nothing_dispatched(self) -> None:
        """No job of any type was dispatched."""
        if self.records:
            raise AssertionError(
                f"Expected no jobs to be dispatched, but {len(self.records)} were: "
                + self._summary()
            )

    def assert_chained(self, jobs: Sequence[ChainSelector]) -> None:
        """A chain of exactly ``jobs``, in order, was dispatched: each a class or type name
        (any job of that type) or a job (an equal one), like Laravel's ``assertChained``;
        ``kashq.PendingBatch`` stands for a batch in the chain."""

        def fits(wanted: ChainSelector, job: Dispatchable | PendingBatch) -> bool:
            if isinstance(job, PendingBatch) or wanted is PendingBatch:
                return wanted is PendingBatch and isinstance(job, PendingBatch)
            if isinstance(wanted, PendingBatch):
                return False
            if isinstance(wanted, Dispatchable):
                return wanted == job or (
                    wanted.type_name == job.type_name
                    and wanted.payload_data() == job.payload_data()
                )
            return job.type_name == _type_name(wanted)

        for chain in list(self.chains):
            if len(chain.jobs) == len(jobs) and all(map(fits, jobs, chain.jobs)):
                return
        seen = "; ".join(" -> ".join(map(_name_of, chain.jobs)) for chain in self.chains)
        wanted = " -> ".join(map(_name_of, jobs))
        raise AssertionError(
            f"Expected a chain {wanted} to be dispatched; chains dispatched: {seen or 'none'}"
        )

    def assert_batched(self, predicate: Callable[[PendingBatch], bool] | None = None) -> None:
        """A batch was dispatched (one ``predicate`` accepts), like Laravel's ``assertBatched``:
        the predicate gets the :class:`~kashq.workflows.batch.PendingBatch`, with ``label``,
        ``jobs()`` (every job, chains' steps included) and ``callbacks``."""
        if any(predicate is None or predicate(batch) for batch in list(self.batches)):
            return
        seen = "; ".join(f"{b.label or '(no name)'} x{len(b.jobs())}" for b in self.batches)
        raise AssertionError(
            f"Expected a batch{_matching(predicate)} to be dispatched; "
            f"batches dispatched: {seen or 'none'}"
        )

    def _assert_count(
        self, job: JobSelector, predicate: Predicate | None, count: int | None, *, queue: str | None
    ) -> None:
        name = _type_name(job)
        found = self.dispatched(job, predicate, queue=queue)
        where = f" on queue {queue!r}" if queue is not None else ""
        if count is None and found:
            return
        if count is not None and len(found) == count:
            return
        wanted = f"{_times(count)}" if count is not None else "at least once"
        raise AssertionError(
            f"Expected {name} to be dispatched{where}{_matching(predicate)} {wanted}, "
            f"but it was dispatched {_times(len(found))}. Dispatched: {self._summary()}"
        )

    def _summary(self) -> str:
        if not self.records:
            return "nothing"
        counts: dict[str, int] = {}
        for r in self.records:
            key = f"{r.envelope.type} on {r.envelope.queue!r}"
            counts[key] = counts.get(key, 0) + 1
        return "; ".join(f"{key} x{n}" for key, n in counts.items())


@contextmanager
def fake(*, default_queue: str = "default") -> Iterator[QueueFake]:
    """Record dispatches instead of queueing them, for the duration of the block."""
    queue = QueueFake(default_queue=default_queue)
    previous = _dispatcher.set_dispatcher(queue)
    try:
        yield queue
    finally:
        _dispatcher.set_dispatcher(previous)


class MemoryQueue:
    """A memory-driver manager with a fake clock, made current by :func:`memory_queue`."""

    def __init__(self, manager: QueueManager, clock: FakeClock) -> None:
        self.manager = manager
        self.clock = clock

    @property
    def driver(self) -> MemoryDriver:
        driver = self.manager.connection("memory")
        assert isinstance(driver, MemoryDriver)
        return driver

    def drain(self, *queues: str, **worker_options: Any) -> WorkerStats:
        """Run every queued job to an outcome, retries and delays included (fake time)."""
        return drain(*queues, manager=self.manager, **worker_options)

    def sizes(self, *queues: str) -> dict[str, QueueSizes]:
        return self.driver.sizes(queues or self.driver.queue_names())

    def failed(self) -> list[FailedJob]:
        return self.manager.failed_store().all()


@contextmanager
def memory_queue(**settings: Any) -> Iterator[MemoryQueue]:
    """A fresh in-memory queue with a fake clock, current for the block."""
    clock = FakeClock()
    manager = QueueManager(load_settings(connection="memory", **settings), clock=clock)
    previous = swap_manager(manager)
    try:
        yield MemoryQueue(manager, clock)
    finally:
        swap_manager(previous)
        manager.close()


def drain(*queues: str, manager: QueueManager | None = None, **worker_options: Any) -> WorkerStats:
    """Synchronously process every job on the memory connection (all queues by default;
    a paused queue's jobs are left queued)."""
    manager = manager or current_manager()
    driver = manager.connection("memory")
    if not isinstance(driver, MemoryDriver):
        raise TypeError("drain() works on the memory connection only")
    stats = WorkerStats()

    def unpaused() -> tuple[str, ...]:  # a paused queue's jobs stay where they are
        paused = manager.paused("memory")
        return tuple(q for q in (queues or driver.queue_names()) if q not in paused)

    names = unpaused()
    while names:  # jobs dispatched during the drain may open queues not seen before
        worker = manager.worker("memory", queues=names, **worker_options)
        worker.drain()
        stats.add(worker.stats)
        names = unpaused()
        if not any(s.ready or s.delayed for s in driver.sizes(names).values()):
            break
    return stats


def _type_name(job: JobSelector) -> str:
    if isinstance(job, str):
        return job
    return job.__kashq_name__


def _name_of(job: ChainSelector) -> str:
    if isinstance(job, Dispatchable):
        return job.type_name
    if isinstance(job, PendingBatch) or job is PendingBatch:
        return "batch"
    return _type_name(job)


def _times(n: int) -> str:
    return "1 time" if n == 1 else f"{n} times"


def _matching(predicate: Predicate | None) -> str:
    return "" if predicate is None else " matching the given predicate"
