"""Where a new job goes: the order in which shards are tried for it.

Each strategy answers with shard indexes, best first. ``hash`` gives exactly
one (the job id's owner on the ring: a job never lands elsewhere), the others
give every shard so a down one can be skipped.
"""

from __future__ import annotations

import enum
import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from kashq.drivers.sharded.ring import HashRing


class ShardStrategy(str, enum.Enum):
    """How :class:`~kashq.drivers.sharded.ShardedDriver` picks a shard for a new job."""

    HASH = "hash"
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"


class Chooser(Protocol):
    def order(self, job_id: str, queue: str) -> Sequence[int]:
        """Shard indexes to try for a job, best first."""
        ...

    def placed(self, index: int, queue: str, count: int) -> None:
        """``count`` jobs of ``queue`` were stored on shard ``index``."""
        ...


class HashChooser:
    """Consistent hashing on the job id: the same id always lands on the same shard."""

    def __init__(self, names: Sequence[str]) -> None:
        self._ring = HashRing(names)

    def order(self, job_id: str, queue: str) -> Sequence[int]:
        return (self._ring.index(job_id),)

    def placed(self, index: int, queue: str, count: int) -> None:
        return None


class RoundRobinChooser:
    """Each job to the next shard in turn."""

    def __init__(self, shards: int) -> None:
        self._shards = shards
        self._turn = itertools.count()  # next() on a count is atomic under the GIL

    def order(self, job_id: str, queue: str) -> Sequence[int]:
        first = next(self._turn) % self._shards
        return [(first + step) % self._shards for step in range(self._shards)]

    def placed(self, index: int, queue: str, count: int) -> None:
        return None


LoadReader = Callable[[str], list[int | None]]
"""Ready jobs of a queue on each shard, by index; None for a shard that did not answer."""


class LeastLoadedChooser:
    """The shard holding the fewest ready jobs of the queue.

    Counts are read from every shard at most once per ``ttl_s`` per queue and
    bumped locally for each job placed in between, so a burst of dispatches
    spreads out and dispatching stays one round trip in the common case.
    """

    def __init__(self, shards: int, read_loads: LoadReader, *, ttl_s: float = 0.5) -> None:
        self._shards = shards
        self._read = read_loads
        self._ttl_s = ttl_s
        self._loads: dict[str, tuple[float, list[float]]] = {}
        self._lock = threading.Lock()

    def order(self, job_id: str, queue: str) -> Sequence[int]:
        loads = self._current(queue)
        # Ties (every shard empty, under light load) are broken at random, not to shard 0.
        ties = [random.random() for _ in range(self._shards)]
        return sorted(range(self._shards), key=lambda i: (loads[i], ties[i]))

    def placed(self, index: int, queue: str, count: int) -> None:
        with self._lock:
            cached = self._loads.get(queue)
            if cached is not None:
                cached[1][index] += count

    def _current(self, queue: str) -> list[float]:
        now = time.monotonic()
        with self._lock:
            cached = self._loads.get(queue)
            if cached is not None and now - cached[0] < self._ttl_s:
                return list(cached[1])
        # A shard that did not answer sorts last (it is skipped while down anyway).
        loads = [float("inf") if n is None else float(n) for n in self._read(queue)]
        with self._lock:
            self._loads[queue] = (now, loads)
        return list(loads)


def chooser_for(strategy: ShardStrategy, names: Sequence[str], read_loads: LoadReader) -> Chooser:
    if strategy is ShardStrategy.HASH:
        return HashChooser(names)
    if strategy is ShardStrategy.ROUND_ROBIN:
        return RoundRobinChooser(len(names))
    return LeastLoadedChooser(len(names), read_loads)
