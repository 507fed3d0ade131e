"""Locks and counters in Redis (GoFlow's ``NewDistributedLock``).

A lock is one string key holding its holder's token, taken with
``SET key token NX PX ttl``; release and extend are Lua compare-and-delete and
compare-and-pexpire (``lua/``), so only the token's holder can free or
prolong it. Every key carries a hash tag, so this works on Redis Cluster.
This is the single-instance lock (no Redlock): it is as safe as the one Redis
(or cluster primary) holding the key. Every call goes through the Redis
driver's retry policy (:mod:`kashq.drivers.redis.retry`: the first call after a
Redis restart succeeds). Redis errors leave as ``DriverError``, naming the server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.drivers.redis import retry
from kashq.drivers.redis.client import RedisClientUser, failure
from kashq.drivers.redis.keys import counter_key, lock_key
from kashq.drivers.redis.lua import LuaScripts
from kashq.locks.held import HeldLock, acquire_waiting, check_ttl, new_token

T = TypeVar("T")


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1 (PX/PEXPIRE reject 0)."""
    return max(1, math.ceil(seconds * 1000))


class _Scripts:
    """The ``lua/`` scripts, one typed method each."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lua = LuaScripts("kashq.locks", ("release", "extend", "hit"))

    def load(self) -> None:
        self._lua.load(self._client)

    def release(self, key: str, token: str) -> bool:
        return int(self._lua.run(self._client, "release", [key], [token])) == 1

    def extend(self, key: str, token: str, ttl_ms: int) -> bool:
        return int(self._lua.run(self._client, "extend", [key], [token, ttl_ms])) == 1

    def hit(self, key: str, expire_ms: int) -> int:
        return int(self._lua.run(self._client, "hit", [key], [expire_ms]))


class DistributedLock(RedisClientUser):
    """A :class:`~kashq.locks.base.LockBackend` on Redis, keys under ``prefix``.

    ``client`` is a URL (``redis://``, ``rediss://``, ``redis+cluster://``) or a
    redis-py client (``redis.Redis`` or ``RedisCluster``). ``clock`` places the
    counters' windows; lock TTLs are kept by Redis itself.
    """

    def __init__(
        self, client: Any | str, *, prefix: str = "kashq", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(client)
        self.prefix = prefix
        self._clock = clock
        self._scripts = _Scripts(self.client)

    def acquire(self, key: str, ttl_s: float, *, wait_s: float = 0.0) -> HeldLock:
        """Take ``key`` for ``ttl_s`` seconds, waiting up to ``wait_s``; else LockNotAcquired."""
        check_ttl(ttl_s)
        return acquire_waiting(lambda: self.try_acquire(key, ttl_s), key, wait_s)

    def try_acquire(self, key: str, ttl_s: float) -> HeldLock | None:
        """Take ``key`` now if it is free; None if it is held."""
        check_ttl(ttl_s)
        token = new_token()
        name = lock_key(self.prefix, key)
        taken = self._call(
            "acquiring a lock", lambda: self.client.set(name, token, nx=True, px=_ms(ttl_s))
        )
        return HeldLock(self, key, token) if taken else None

    def hit(self, key: str, window_s: float) -> int:
        """Count one event for ``key`` in the current fixed window; returns the count."""
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        now = self._clock.time()
        window = math.floor(now / window_s)
        expire_ms = _ms((window + 1) * window_s - now)
        name = counter_key(self.prefix, key, window)
        return self._call("counting a hit", lambda: self._scripts.hit(name, expire_ms))

    def release_token(self, key: str, token: str) -> bool:
        """Delete ``key`` if it is held under ``token``."""
        name = lock_key(self.prefix, key)
        return self._call("releasing a lock", lambda: self._scripts.release(name, token))

    def extend_token(self, key: str, token: str, ttl_s: float) -> bool:
        """Make ``key`` last ``ttl_s`` from now if it is held under ``token``."""
        name = lock_key(self.prefix, key)
        return self._call("extending a lock", lambda: self._scripts.extend(name, token, _ms(ttl_s)))

    def _call(self, what: str, step: Callable[[], T]) -> T:
        try:
            return retry.call(step, reload_scripts=self._scripts.load)
        except redis.RedisError as exc:
            raise failure(exc, self.address, what=f"{what} failed on Redis") from exc
