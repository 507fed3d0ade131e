"""The in-process driver: thread-safe, for development, tests and the sync driver.

Jobs live in this process only and are lost when it exits. Otherwise it keeps
the same rules as the durable drivers (priorities, FIFO within a priority,
delayed jobs, leases with re-delivery), which is why it runs the same driver
contract suite and can stand in for them in tests.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.base import (
    Cleared,
    FoundJob,
    JobState,
    QueueSizes,
    Reservation,
    Storage,
    check_control_name,
    is_job_id,
)
from kashq.envelope import Envelope, unique_claim

_READY, _DELAYED, _RESERVED = "ready", "delayed", "reserved"


@dataclass(slots=True)
class _Stored:
    raw: str
    queue: str
    priority: int
    state: str
    seq: int
    deliveries: int = 0
    token: str = ""
    lease_until: float = 0.0
    available_at: float = 0.0


@dataclass(slots=True)
class _Queue:
    # Heaps hold (sort keys..., seq, id); an entry whose seq no longer matches
    # the stored job (released, cleared, re-pushed) is stale and skipped.
    ready: list[tuple[int, int, str]] = field(default_factory=list)
    delayed: list[tuple[float, int, str]] = field(default_factory=list)
    leases: list[tuple[float, int, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {_READY: 0, _DELAYED: 0, _RESERVED: 0})


class MemoryDriver:
    """Queues held in this process's memory."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._jobs: dict[str, _Stored] = {}
        self._queues: dict[str, _Queue] = {}
        self._seq = itertools.count(1)
        self._cond = threading.Condition()
        self._control: dict[str, tuple[str, float | None]] = {}  # name -> (value, expires_at)

    @property
    def storage(self) -> Storage:
        return Storage("memory", self, clock=self._clock)

    # -- producing ------------------------------------------------------
    def push(self, envelope: Envelope) -> None:
        self.push_many((envelope,))

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        now = self._clock.time()
        with self._cond:
            for env in envelopes:
                held = self._jobs.get(env.id)
                if held is not None and held.state == _RESERVED:
                    continue  # a worker holds it: leave the running job alone
                self._forget(env.id)
                stored = _Stored(env.encode(), env.queue, env.priority, "", next(self._seq))
                self._jobs[env.id] = stored
                self._place(env.id, stored, env.available_at, now)
            self._cond.notify_all()

    # -- consuming ------------------------------------------------------
    def reserve(
        self,
        queues: Sequence[str],
        *,
        lease_s: float,
        wait_s: float = 0.0,
        ack: Reservation | None = None,
    ) -> Reservation | None:
        deadline = time.monotonic() + wait_s
        with self._cond:
            if ack is not None and self._owned(ack) is not None:
                self._forget(ack.id)
            while True:
                now = self._clock.time()
                for name in queues:
                    found = self._take(name, now, lease_s)
                    if found is not None:
                        return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, self._next_event_in(queues, now)))

    def ack(self, reservation: Reservation) -> None:
        with self._cond:
            if self._owned(reservation) is not None:
                self._forget(reservation.id)

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        now = self._clock.time()
        with self._cond:
            stored = self._owned(reservation)
            if stored is None:
                return
            self._set_state(stored, None)
            stored.raw = envelope.encode()
            stored.priority = envelope.priority
            stored.deliveries = 0
            stored.token = ""
            stored.seq = next(self._seq)
            self._place(reservation.id, stored, envelope.available_at, now)
            self._cond.notify_all()

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        with self._cond:
            stored = self._owned(reservation)
            if stored is None:
                return False
            stored.lease_until = self._clock.time() + lease_s
            heapq.heappush(
                self._queue(stored.queue).leases,
                (stored.lease_until, stored.seq, reservation.id),
            )
            return True

    # -- inspecting -----------------------------------------------------
    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        with self._cond:
            now = self._clock.time()
            result = {}
            for name in queues:
                self._promote(name, now)
                counts = self._queue(name).counts
                result[name] = QueueSizes(counts[_READY], counts[_DELAYED], counts[_RESERVED])
            return result

    def find(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        if not is_job_id(job_id):
            return None
        with self._cond:
            return self._found(job_id, queues)

    def remove(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """Under the lock every reserve takes: the job is taken out or found reserved.
        Its heap entries stay behind, stale, and are skipped like a replaced job's."""
        if not is_job_id(job_id):
            return None
        with self._cond:
            found = self._found(job_id, queues)
            if found is not None and found.state != "reserved":
                self._forget(job_id)
            return found

    def queue_names(self) -> list[str]:
        with self._cond:
            return sorted(name for name, q in self._queues.items() if any(q.counts.values()))

    def clear(self, queue: str) -> Cleared:
        with self._cond:
            ids = [job_id for job_id, s in self._jobs.items() if s.queue == queue]
            claims = tuple(filter(None, (unique_claim(self._jobs.pop(i).raw) for i in ids)))
            self._queues.pop(queue, None)
            return Cleared(len(ids), claims)

    # -- control records ------------------------------------------------
    def put_control(self, name: str, value: str, ttl_s: float | None = None) -> None:
        check_control_name(name)
        expires_at = None if ttl_s is None else self._clock.time() + ttl_s
        with self._cond:
            self._control[name] = (value, expires_at)

    def get_control(self, prefix: str = "") -> dict[str, str]:
        now = self._clock.time()
        with self._cond:
            expired = [n for n, (_, exp) in self._control.items() if exp is not None and exp <= now]
            for name in expired:
                del self._control[name]
            return {n: v for n, (v, _) in sorted(self._control.items()) if n.startswith(prefix)}

    def delete_control(self, name: str) -> bool:
        now = self._clock.time()
        with self._cond:
            found = self._control.pop(name, None)
        return found is not None and (found[1] is None or found[1] > now)

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- internals (caller holds the lock) -------------------------------
    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _place(self, job_id: str, stored: _Stored, available_at: float, now: float) -> None:
        queue = self._queue(stored.queue)
        stored.available_at = available_at
        if available_at > now:
            self._set_state(stored, _DELAYED)
            heapq.heappush(queue.delayed, (available_at, stored.seq, job_id))
        else:
            self._set_state(stored, _READY)
            heapq.heappush(queue.ready, (-stored.priority, stored.seq, job_id))

    def _set_state(self, stored: _Stored, state: str | None) -> None:
        counts = self._queue(stored.queue).counts
        if stored.state:
            counts[stored.state] -= 1
        stored.state = state or ""
        if state is not None:
            counts[state] += 1

    def _forget(self, job_id: str) -> None:
        stored = self._jobs.pop(job_id, None)
        if stored is not None:
            self._set_state(stored, None)

    def _found(self, job_id: str, queues: Sequence[str] | None) -> FoundJob | None:
        stored = self._jobs.get(job_id)
        if stored is None or (queues is not None and stored.queue not in queues):
            return None
        if stored.state == _RESERVED:
            return FoundJob(
                stored.queue, "reserved", stored.raw, stored.deliveries, stored.lease_until
            )
        # By time, not by heap: a delayed job falls due before _promote moves it.
        state: JobState = "delayed" if stored.available_at > self._clock.time() else "ready"
        return FoundJob(stored.queue, state, stored.raw, stored.deliveries)

    def _live(self, job_id: str, seq: int, state: str) -> _Stored | None:
        stored = self._jobs.get(job_id)
        if stored is None or stored.seq != seq or stored.state != state:
            return None
        return stored

    def _promote(self, name: str, now: float) -> None:
        """Move due delayed jobs and lapsed leases back to ready."""
        queue = self._queue(name)
        while queue.delayed and queue.delayed[0][0] <= now:
            _, seq, job_id = heapq.heappop(queue.delayed)
            stored = self._live(job_id, seq, _DELAYED)
            if stored is not None:
                self._set_state(stored, _READY)
                heapq.heappush(queue.ready, (-stored.priority, seq, job_id))
        while queue.leases and queue.leases[0][0] <= now:
            _, seq, job_id = heapq.heappop(queue.leases)
            stored = self._live(job_id, seq, _RESERVED)
            if stored is not None and stored.lease_until <= now:
                self._set_state(stored, _READY)
                stored.token = ""
                stored.seq = next(self._seq)
                heapq.heappush(queue.ready, (-stored.priority, stored.seq, job_id))

    def _take(self, name: str, now: float, lease_s: float) -> Reservation | None:
        self._promote(name, now)
        queue = self._queue(name)
        while queue.ready:
            _, seq, job_id = heapq.heappop(queue.ready)
            stored = self._live(job_id, seq, _READY)
            if stored is None:
                continue
            self._set_state(stored, _RESERVED)
            stored.deliveries += 1
            stored.seq = next(self._seq)
            stored.token = str(stored.seq)
            stored.lease_until = now + lease_s
            heapq.heappush(queue.leases, (stored.lease_until, stored.seq, job_id))
            return Reservation(job_id, name, stored.raw, stored.deliveries, stored.token)
        return None

    def _owned(self, reservation: Reservation) -> _Stored | None:
        stored = self._jobs.get(reservation.id)
        if stored is None or stored.state != _RESERVED or stored.token != reservation.token:
            return None
        return stored

    def next_due_in(self, queues: Sequence[str]) -> float | None:
        """Seconds until the first delayed job of ``queues`` falls due; None if none waits.

        :meth:`kashq.Worker.drain` sleeps exactly that long, so on a fake clock
        each retry runs at its time to the microsecond.
        """
        with self._cond:
            now = self._clock.time()
            times = [q.delayed[0][0] for q in map(self._queue, queues) if q.delayed]
            return max(min(times) - now, 0.0) if times else None

    def _next_event_in(self, queues: Sequence[str], now: float) -> float:
        """Seconds until the next delayed job or lease falls due (capped)."""
        soonest = 1.0
        for name in queues:
            queue = self._queue(name)
            for heap in (queue.delayed, queue.leases):
                if heap:
                    soonest = min(soonest, max(heap[0][0] - now, 0.001))
        return soonest
