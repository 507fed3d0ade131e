"""A sorted set of distinct keys: the memory driver's queue and tag indexes.

The keys are kept in sorted buckets of at most ``2 * LOAD`` each, with each
bucket's last key in a list beside them (the layout of sortedcontainers'
``SortedList``): adding or discarding a key finds its bucket by bisection and
moves at most a bucket's worth of references, so a queue of a million jobs
stays cheap to change, and a page of it is read from where it starts.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=tuple[Any, ...])

LOAD = 500


class SortedKeys(Generic[K]):
    """Distinct tuples in ascending order."""

    __slots__ = ("_buckets", "_len", "_maxes")

    def __init__(self) -> None:
        self._buckets: list[list[K]] = []
        self._maxes: list[K] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, key: K) -> None:
        """Add ``key`` (it must not be there already)."""
        self._len += 1
        if not self._buckets:
            self._buckets.append([key])
            self._maxes.append(key)
            return
        i = min(bisect_left(self._maxes, key), len(self._maxes) - 1)
        bucket = self._buckets[i]
        insort(bucket, key)
        if len(bucket) > 2 * LOAD:
            self._buckets.insert(i + 1, bucket[LOAD:])
            self._maxes.insert(i + 1, bucket[-1])
            del bucket[LOAD:]
        self._maxes[i] = bucket[-1]

    def discard(self, key: K) -> None:
        """Remove ``key`` if it is there."""
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            return
        bucket = self._buckets[i]
        j = bisect_left(bucket, key)
        if j == len(bucket) or bucket[j] != key:
            return
        del bucket[j]
        self._len -= 1
        if bucket:
            self._maxes[i] = bucket[-1]
        else:
            del self._buckets[i], self._maxes[i]

    def first(self) -> K | None:
        """The smallest key, or None when empty."""
        return self._buckets[0][0] if self._buckets else None

    def since(self, bound: tuple[Any, ...]) -> Iterator[K]:
        """The keys from ``bound`` on (``bound`` may be a prefix: it sorts before its
        extensions), in order; the set must not change while this is read."""
        i = bisect_left(self._maxes, bound)
        j = bisect_left(self._buckets[i], bound) if i < len(self._buckets) else 0
        while i < len(self._buckets):
            yield from self._buckets[i][j:]
            i, j = i + 1, 0

    def __iter__(self) -> Iterator[K]:
        return self.since(())
