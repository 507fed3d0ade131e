"""The in-process driver: thread-safe, for development, tests and the sync driver.

Jobs live in this process only and are lost when it exits. Otherwise it keeps
the same rules as the durable drivers (priorities, FIFO within a priority,
delayed jobs, leases with re-delivery, a tag index, listings with cursors),
which is why it runs the same driver contract suite and can stand in for them
in tests. Each queue keeps its jobs in sorted indexes (:mod:`.sortedkeys`), one
per state and one per tag, so no step walks a whole queue.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers import cursor as cursors
from kashq.drivers.base import (
    ONCE_KEEP_S,
    Cleared,
    FoundJob,
    JobListing,
    JobState,
    ListedJob,
    QueueSizes,
    Reservation,
    Storage,
    check_control_name,
    is_job_id,
)
from kashq.drivers.sortedkeys import SortedKeys
from kashq.envelope import Envelope, unique_claim

_READY, _DELAYED, _RESERVED = "ready", "delayed", "reserved"
_ONCE_PRUNE_AT = 1024  # push_once ids held before the first sweep of forgotten ones
_SHAPES = {"ready": "ii", "delayed": "fi", "reserved": "fi"}


@dataclass(slots=True)
class _Stored:
    raw: str
    queue: str
    priority: int
    state: str
    seq: int
    tags: tuple[str, ...] = ()
    placed: int = 0  # seq when pushed or released: its place in its tags' indexes
    deliveries: int = 0
    token: str = ""
    lease_until: float = 0.0
    available_at: float = 0.0


@dataclass(slots=True)
class _Queue:
    # Each index holds (sort keys..., seq, id) of the jobs in one state, exactly.
    ready: SortedKeys[tuple[int, int, str]] = field(default_factory=SortedKeys)
    since: SortedKeys[tuple[float, int, str]] = field(default_factory=SortedKeys)  # ready, by time
    delayed: SortedKeys[tuple[float, int, str]] = field(default_factory=SortedKeys)
    leases: SortedKeys[tuple[float, int, str]] = field(default_factory=SortedKeys)
    tags: dict[str, SortedKeys[tuple[int, str]]] = field(default_factory=dict)  # (placed, id)


class MemoryDriver:
    """Queues held in this process's memory."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._jobs: dict[str, _Stored] = {}
        self._queues: dict[str, _Queue] = {}
        self._seq = itertools.count(1)
        self._cond = threading.Condition()
        self._control: dict[str, tuple[str, float | None]] = {}  # name -> (value, expires_at)
        self._once: dict[str, float] = {}  # push_once: job id -> when it is forgotten
        self._once_prune_at = _ONCE_PRUNE_AT

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
                seq = next(self._seq)
                tags = tuple(dict.fromkeys(env.tags))  # each tag indexes the job once
                stored = _Stored(env.encode(), env.queue, env.priority, "", seq, tags, seq)
                self._jobs[env.id] = stored
                self._tag(env.id, stored, add=True)
                self._place(env.id, stored, env.available_at, now)
            self._cond.notify_all()

    def push_once(self, envelope: Envelope, keep_s: float = ONCE_KEEP_S) -> bool:
        now = self._clock.time()
        with self._cond:
            if self._once.get(envelope.id, now) > now:
                return False
            if len(self._once) >= self._once_prune_at:  # forgotten ids go, at amortised cost
                self._once = {job_id: at for job_id, at in self._once.items() if at > now}
                self._once_prune_at = max(_ONCE_PRUNE_AT, 2 * len(self._once))
            self._once[envelope.id] = now + keep_s
            self.push_many((envelope,))
            return True

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
            self._enter(reservation.id, stored, None)
            self._tag(reservation.id, stored, add=False)
            stored.raw = envelope.encode()
            stored.priority = envelope.priority
            stored.tags = tuple(dict.fromkeys(envelope.tags))
            stored.deliveries = 0
            stored.token = ""
            stored.seq = stored.placed = next(self._seq)
            self._tag(reservation.id, stored, add=True)
            self._place(reservation.id, stored, envelope.available_at, now)
            self._cond.notify_all()

    def extend(self, reservation: Reservation, lease_s: float) -> bool:
        with self._cond:
            stored = self._owned(reservation)
            if stored is None:
                return False
            self._enter(reservation.id, stored, None)
            stored.lease_until = self._clock.time() + lease_s
            self._enter(reservation.id, stored, _RESERVED)
            return True

    # -- inspecting -----------------------------------------------------
    def sizes(self, queues: Sequence[str]) -> dict[str, QueueSizes]:
        with self._cond:
            now = self._clock.time()
            result = {}
            for name in queues:
                self._promote(name, now)
                q = self._queue(name)
                result[name] = QueueSizes(len(q.ready), len(q.delayed), len(q.leases))
            return result

    def find(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        if not is_job_id(job_id):
            return None
        with self._cond:
            return self._found(job_id, queues)

    def remove(self, job_id: str, queues: Sequence[str] | None = None) -> FoundJob | None:
        """Under the lock every reserve takes: the job is taken out or found reserved."""
        if not is_job_id(job_id):
            return None
        with self._cond:
            found = self._found(job_id, queues)
            if found is not None and found.state != "reserved":
                self._forget(job_id)
            return found

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        limit: int = 50,
        cursor: str | None = None,
        tag: str | None = None,
    ) -> JobListing:
        """Read from the state's index (a tag's, with ``tag``) from the cursor on: O(limit),
        plus with a tag the tagged jobs of other states walked past. Due delayed jobs are
        moved to ready first, as a reserve would (find calls them ready already)."""
        cursors.check_listing(state, limit, tag)
        kind = cursors.listing_kind(state, tag)
        after = cursors.decode(cursor, kind, "i" if tag is not None else _SHAPES[state])
        with self._cond:
            now = self._clock.time()
            self._promote(queue, now, leases=False)
            q = self._queue(queue)
            if tag is not None:
                picked = self._tagged(q.tags.get(tag), state, after, limit, now)
            else:
                picked = self._listed(q, state, after, limit)
            jobs = [ListedJob(job_id, self._found_at(job_id, now)) for job_id, _ in picked[:limit]]
        more = len(picked) > limit
        return JobListing(jobs, cursors.encode(kind, picked[limit - 1][1]) if more else None)

    def oldest_ready(self, queues: Sequence[str]) -> dict[str, float | None]:
        with self._cond:
            now = self._clock.time()
            oldest: dict[str, float | None] = {}
            for name in queues:
                self._promote(name, now, leases=False)
                first = self._queue(name).since.first()
                oldest[name] = None if first is None else first[0]
            return oldest

    def queue_names(self) -> list[str]:
        with self._cond:
            return sorted(
                name for name, q in self._queues.items() if q.ready or q.delayed or q.leases
            )

    def clear(self, queue: str) -> Cleared:
        with self._cond:
            q = self._queues.pop(queue, None)
            if q is None:
                return Cleared(0)
            ids = [key[-1] for index in (q.ready, q.delayed, q.leases) for key in index]
            claims = tuple(filter(None, (unique_claim(self._jobs.pop(i).raw) for i in ids)))
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
        stored.available_at = available_at
        self._enter(job_id, stored, _DELAYED if available_at > now else _READY)

    def _enter(self, job_id: str, stored: _Stored, state: str | None) -> None:
        """Move ``stored`` out of its state's indexes and into those of ``state`` (None: out)."""
        q = self._queue(stored.queue)
        for index, key in self._keys(job_id, stored, q):
            index.discard(key)
        stored.state = state or ""
        for index, key in self._keys(job_id, stored, q):
            index.add(key)

    @staticmethod
    def _keys(job_id: str, s: _Stored, q: _Queue) -> list[tuple[SortedKeys[Any], tuple[Any, ...]]]:
        """The (index, key) pairs that hold ``s`` in its state."""
        if s.state == _READY:
            return [
                (q.ready, (-s.priority, s.seq, job_id)),
                (q.since, (s.available_at, s.seq, job_id)),
            ]
        if s.state == _DELAYED:
            return [(q.delayed, (s.available_at, s.seq, job_id))]
        if s.state == _RESERVED:
            return [(q.leases, (s.lease_until, s.seq, job_id))]
        return []

    def _tag(self, job_id: str, stored: _Stored, *, add: bool) -> None:
        """Add ``stored`` to the indexes of its tags, or take it out of them."""
        tags = self._queue(stored.queue).tags
        for tag in stored.tags:
            if add:
                tags.setdefault(tag, SortedKeys()).add((stored.placed, job_id))
            elif tag in tags:
                tags[tag].discard((stored.placed, job_id))
                if not tags[tag]:
                    del tags[tag]

    def _listed(
        self, q: _Queue, state: str, after: cursors.Position | None, limit: int
    ) -> list[tuple[str, cursors.Position]]:
        """Up to ``limit + 1`` (id, position) of the state's index after ``after``: a
        position is (priority, seq) for ready, (time, seq) for delayed and reserved."""
        indexes: dict[str, SortedKeys[Any]] = {_READY: q.ready, _DELAYED: q.delayed}
        index = indexes.get(state, q.leases)
        sign = -1 if state == _READY else 1  # ready is keyed by -priority
        start = () if after is None else (sign * cast(float, after[0]), int(after[1]) + 1)
        keys = itertools.islice(index.since(start), limit + 1)
        return [(key[-1], (sign * key[0], key[1])) for key in keys]

    def _tagged(
        self,
        index: SortedKeys[tuple[int, str]] | None,
        state: str,
        after: cursors.Position | None,
        limit: int,
        now: float,
    ) -> list[tuple[str, cursors.Position]]:
        """Up to ``limit + 1`` (id, (placed,)) of a tag's jobs in ``state`` after ``after``."""
        picked: list[tuple[str, cursors.Position]] = []
        start = () if after is None else (int(after[0]) + 1,)
        for placed, job_id in () if index is None else index.since(start):
            if self._state(job_id, now) == state:
                picked.append((job_id, (placed,)))
                if len(picked) > limit:
                    break
        return picked

    def _forget(self, job_id: str) -> None:
        stored = self._jobs.pop(job_id, None)
        if stored is not None:
            self._enter(job_id, stored, None)
            self._tag(job_id, stored, add=False)

    def _state(self, job_id: str, now: float) -> JobState:
        """The state :meth:`find` reports: by time, so a delayed job falls due before
        :meth:`_promote` moves it."""
        stored = self._jobs[job_id]
        if stored.state == _RESERVED:
            return "reserved"
        return "delayed" if stored.available_at > now else "ready"

    def _found(self, job_id: str, queues: Sequence[str] | None) -> FoundJob | None:
        stored = self._jobs.get(job_id)
        if stored is None or (queues is not None and stored.queue not in queues):
            return None
        return self._found_at(job_id, self._clock.time())

    def _found_at(self, job_id: str, now: float) -> FoundJob:
        stored = self._jobs[job_id]
        state = self._state(job_id, now)
        lease_until = stored.lease_until if state == "reserved" else None
        return FoundJob(stored.queue, state, stored.raw, stored.deliveries, lease_until)

    def _promote(self, name: str, now: float, *, leases: bool = True) -> None:
        """Move due delayed jobs (and, with ``leases``, lapsed leases) to ready."""
        q = self._queue(name)
        while (due := q.delayed.first()) is not None and due[0] <= now:
            self._enter(due[2], self._jobs[due[2]], _READY)
        while leases and (lapsed := q.leases.first()) is not None and lapsed[0] <= now:
            stored = self._jobs[lapsed[2]]
            self._enter(lapsed[2], stored, None)
            stored.token = ""
            stored.seq = next(self._seq)  # behind its equals
            self._enter(lapsed[2], stored, _READY)

    def _take(self, name: str, now: float, lease_s: float) -> Reservation | None:
        self._promote(name, now)
        head = self._queue(name).ready.first()
        if head is None:
            return None
        job_id = head[2]
        stored = self._jobs[job_id]
        self._enter(job_id, stored, None)
        stored.deliveries += 1
        stored.seq = next(self._seq)
        stored.token = str(stored.seq)
        stored.lease_until = now + lease_s
        self._enter(job_id, stored, _RESERVED)
        return Reservation(job_id, name, stored.raw, stored.deliveries, stored.token)

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
            times = [due[0] for q in map(self._queue, queues) if (due := q.delayed.first())]
            return max(min(times) - now, 0.0) if times else None

    def _next_event_in(self, queues: Sequence[str], now: float) -> float:
        """Seconds until the next delayed job or lease falls due (capped)."""
        soonest = 1.0
        for name in queues:
            q = self._queue(name)
            for index in (q.delayed, q.leases):
                first = index.first()
                if first is not None:
                    soonest = min(soonest, max(first[0] - now, 0.001))
        return soonest
