"""The lock object every backend hands out, and the waiting loop they share.

A backend only has to offer three token-checked steps (take, free, prolong);
:class:`HeldLock` turns a taken token into the :class:`~kashq.locks.base.Lock`
protocol, and :func:`acquire_waiting` adds ``wait_s`` polling on top.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from kashq.locks.base import LockNotAcquired

# Polling between tries while waiting: short enough to hand a freed lock over
# quickly, jittered so that waiters do not retry in lockstep.
POLL_MIN_S = 0.01
POLL_MAX_S = 0.05


class TokenSteps(Protocol):
    """The token-checked steps a backend implements for :class:`HeldLock`."""

    def release_token(self, key: str, token: str) -> bool:
        """Delete ``key`` if it is held, unexpired, under ``token``."""
        ...

    def extend_token(self, key: str, token: str, ttl_s: float) -> bool:
        """Make ``key`` last ``ttl_s`` from now if it is held, unexpired, under ``token``."""
        ...


def new_token() -> str:
    """A fresh 128-bit random token, as 32 hex digits."""
    return secrets.token_hex(16)


def check_ttl(ttl_s: float) -> None:
    """Reject a TTL that would make a lock that is never held (or held forever)."""
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0, got {ttl_s!r}")


class HeldLock:
    """A lock held under ``token``; a context manager that releases it on exit."""

    def __init__(self, steps: TokenSteps, key: str, token: str) -> None:
        self._steps = steps
        self.key = key
        self.token = token

    def release(self) -> bool:
        """Free the lock if this holder still has it; False if it had expired or moved on."""
        return self._steps.release_token(self.key, self.token)

    def extend(self, ttl_s: float) -> bool:
        """Make the lock last ``ttl_s`` from now, if this holder still has it."""
        check_ttl(ttl_s)
        return self._steps.extend_token(self.key, self.token, ttl_s)

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"HeldLock(key={self.key!r})"  # never the token: it is the holder's secret


def acquire_waiting(try_once: Callable[[], HeldLock | None], key: str, wait_s: float) -> HeldLock:
    """Call ``try_once`` until it takes the lock or ``wait_s`` (real seconds) has passed.

    Waiting is measured on the monotonic clock, not a backend's clock: it is
    about other threads and processes letting go, which happens in real time.
    """
    deadline = time.monotonic() + max(wait_s, 0.0)
    while True:
        held = try_once()
        if held is not None:
            return held
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockNotAcquired(f"lock {key!r} is held by someone else")
        time.sleep(min(left, random.uniform(POLL_MIN_S, POLL_MAX_S)))
