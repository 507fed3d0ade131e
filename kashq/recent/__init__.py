"""What ran recently: the jobs of each queue that completed, were cancelled or expired lately.

:func:`store_for` gives the store sharing the storage of the connection the
jobs run on (by the driver's :class:`~kashq.drivers.base.Storage`): a sorted
set and a hash per queue and outcome in Redis, the ``job_recent`` table, or
memory for the memory and sync drivers. The event recorder fills it from the
workers' events in batches; anyone can page through it::

    from kashq.recent import store_for

    store = store_for(driver, settings)
    jobs, cursor = store.page("emails", "completed", limit=50)
    while cursor is not None:
        more, cursor = store.page("emails", "completed", limit=50, cursor=cursor)

Each list is bounded by ``keep_completed`` (seconds a record is kept) and
``keep_completed_max`` (records kept per queue and outcome), enforced by the
store whenever it writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kashq.config import Settings
from kashq.recent.base import ENDED, Ended, RecentJob, RecentStore, RecentStoreError
from kashq.recent.memory import MemoryRecentStore
from kashq.stores import Shelf, storage_of

if TYPE_CHECKING:
    from kashq.recent.database import DatabaseRecentStore
    from kashq.recent.redis import RedisRecentStore

__all__ = [
    "ENDED",
    "DatabaseRecentStore",
    "Ended",
    "MemoryRecentStore",
    "RecentJob",
    "RecentStore",
    "RecentStoreError",
    "RedisRecentStore",
    "store_for",
]

# Memory records are state held by the store object: one per driver.
_MEMORY: Shelf[MemoryRecentStore] = Shelf()


def store_for(driver: object, settings: Settings) -> RecentStore:
    """The store of recent jobs sharing ``driver``'s storage, on its clock, with the bounds
    of ``settings`` (``keep_completed``, ``keep_completed_max``).

    Chosen by :attr:`driver.storage <kashq.drivers.base.Driver.storage>`, never
    by the driver's class: ``"redis"`` → keys under its prefix, on its client
    (a sharded connection states its first shard's); ``"database"`` → the
    ``job_recent`` table, on its engine (which carries the table prefix);
    ``"memory"``, or a driver that states no storage → one in-memory store per
    driver, the same on every call (its bounds those of the first call).
    """
    keep_s, keep_max = settings.keep_completed, settings.keep_completed_max
    storage = storage_of(driver)
    if storage is None:
        return _MEMORY.get(driver, lambda: MemoryRecentStore(keep_s=keep_s, keep_max=keep_max))
    handle: Any = storage.handle
    if storage.kind == "redis":
        from kashq.recent.redis import RedisRecentStore

        return RedisRecentStore(
            handle, prefix=storage.prefix, clock=storage.clock, keep_s=keep_s, keep_max=keep_max
        )
    if storage.kind == "database":
        from kashq.recent.database import DatabaseRecentStore

        return DatabaseRecentStore(handle, clock=storage.clock, keep_s=keep_s, keep_max=keep_max)
    return _MEMORY.get(
        handle, lambda: MemoryRecentStore(storage.clock, keep_s=keep_s, keep_max=keep_max)
    )


def __getattr__(name: str) -> Any:
    # The Redis and database stores load their libraries only when used.
    if name == "RedisRecentStore":
        from kashq.recent.redis import RedisRecentStore

        return RedisRecentStore
    if name == "DatabaseRecentStore":
        from kashq.recent.database import DatabaseRecentStore

        return DatabaseRecentStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
