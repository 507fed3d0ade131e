"""Locks and counters in this process's memory, for the memory and sync drivers.

Thread-safe, so a dispatcher and worker threads of one process share them;
useless across processes (use the Redis or database backend there). Expiry
follows the given clock, so tests can move time with a ``FakeClock``.
"""

from __future__ import annotations

import math
import threading

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.locks.held import HeldLock, acquire_waiting, check_ttl, new_token


class MemoryLocks:
    """A :class:`~kashq.locks.base.LockBackend` held in a dict, guarded by one mutex."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._locks: dict[str, tuple[str, float]] = {}  # key -> (token, expires_at)
        self._counters: dict[str, tuple[int, int]] = {}  # key -> (window index, count)

    def acquire(self, key: str, ttl_s: float, *, wait_s: float = 0.0) -> HeldLock:
        """Take ``key`` for ``ttl_s`` seconds, waiting up to ``wait_s``; else LockNotAcquired."""
        check_ttl(ttl_s)
        return acquire_waiting(lambda: self.try_acquire(key, ttl_s), key, wait_s)

    def try_acquire(self, key: str, ttl_s: float) -> HeldLock | None:
        """Take ``key`` now if it is free (or its holder's TTL ran out); None if it is held."""
        check_ttl(ttl_s)
        token = new_token()
        with self._mutex:
            now = self._clock.time()
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return None
            self._locks[key] = (token, now + ttl_s)
        return HeldLock(self, key, token)

    def hit(self, key: str, window_s: float) -> int:
        """Count one event for ``key`` in the current fixed window; returns the count."""
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        with self._mutex:
            window = math.floor(self._clock.time() / window_s)
            last_window, count = self._counters.get(key, (window, 0))
            count = count + 1 if last_window == window else 1
            self._counters[key] = (window, count)
            return count

    def release_token(self, key: str, token: str) -> bool:
        """Delete ``key`` if it is held, unexpired, under ``token``."""
        with self._mutex:
            held = self._locks.get(key)
            if held is None or held[0] != token:
                return False
            del self._locks[key]
            return held[1] > self._clock.time()

    def extend_token(self, key: str, token: str, ttl_s: float) -> bool:
        """Make ``key`` last ``ttl_s`` from now if it is held, unexpired, under ``token``."""
        with self._mutex:
            now = self._clock.time()
            held = self._locks.get(key)
            if held is None or held[0] != token or held[1] <= now:
                return False
            self._locks[key] = (token, now + ttl_s)
            return True

    def close(self) -> None:
        """Nothing to release: the state lives and dies with this object."""
