"""What every lock backend offers: locks with a token and a TTL, and windowed counters.

A lock is held by whoever knows its random token: ``release`` and ``extend``
act only while the token still matches, so a holder whose lock expired and was
taken by someone else can never free or prolong the new holder's lock. A lock
whose holder crashed frees itself when its TTL runs out.

Counters (``hit``) count events in fixed time windows, shared by every process
using the same backend: the building block of rate limits and exception
throttles.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from kashq.exceptions import KashqError


class LockNotAcquired(KashqError):
    """The lock is held by someone else (and did not come free within ``wait``)."""


class Lock(Protocol):
    """One held lock."""

    key: str
    token: str

    def release(self) -> bool:
        """Free the lock if this holder still has it; False if it had expired or moved on."""
        ...

    def extend(self, ttl_s: float) -> bool:
        """Make the lock last ``ttl_s`` from now, if this holder still has it."""
        ...

    def __enter__(self) -> Lock: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LockBackend(Protocol):
    """Locks and counters on one store (Redis, a database, this process's memory)."""

    def acquire(self, key: str, ttl_s: float, *, wait_s: float = 0.0) -> Lock:
        """Take ``key`` for ``ttl_s`` seconds, waiting up to ``wait_s`` for it; else raise
        :class:`LockNotAcquired`."""
        ...

    def try_acquire(self, key: str, ttl_s: float) -> Lock | None:
        """Take ``key`` now if it is free; None if it is held."""
        ...

    def hit(self, key: str, window_s: float) -> int:
        """Count one event for ``key`` in the current ``window_s`` window; returns the count."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
