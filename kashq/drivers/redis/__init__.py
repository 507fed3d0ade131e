"""The Redis driver (Redis, Valkey, DragonflyDB, Redis Cluster).

Importing this package loads no driver: :class:`RedisDriver` is imported when
first named, so the locks and the event store can use the plumbing beside it
(``client``, ``retry``, ``lua``, ``keys``) alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kashq.drivers.redis.driver import RedisDriver

__all__ = ["RedisDriver"]


def __getattr__(name: str) -> Any:
    if name != "RedisDriver":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from kashq.drivers.redis.driver import RedisDriver

    return RedisDriver
