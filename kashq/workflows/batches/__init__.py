"""Batch stores: each batch's counts and callbacks, on the connection its jobs run on.

:func:`store_for` picks the store sharing a driver's storage, as the result
store does: keys under the prefix on Redis (a sharded connection: its first
shard), the ``job_batches`` tables on a database, memory otherwise.
"""

from __future__ import annotations

from typing import Any

from kashq.stores import Shelf, storage_of
from kashq.workflows.batches.base import (
    BatchRecord,
    BatchStore,
    BatchStoreError,
    Callbacks,
    Counted,
    MemberState,
)
from kashq.workflows.batches.memory import MemoryBatchStore

__all__ = [
    "BatchRecord",
    "BatchStore",
    "BatchStoreError",
    "Callbacks",
    "Counted",
    "MemberState",
    "MemoryBatchStore",
    "store_for",
]

_MEMORY: Shelf[MemoryBatchStore] = Shelf()


def store_for(driver: Any) -> BatchStore:
    """The batch store sharing ``driver``'s storage (one memory store per memory driver)."""
    storage = storage_of(driver)
    if storage is None:
        return _MEMORY.get(driver, MemoryBatchStore)
    handle: Any = storage.handle
    if storage.kind == "redis":
        from kashq.workflows.batches.redis import RedisBatchStore

        return RedisBatchStore(handle, prefix=storage.prefix)
    if storage.kind == "database":
        from kashq.workflows.batches.database import DatabaseBatchStore

        return DatabaseBatchStore(handle, clock=storage.clock)
    return _MEMORY.get(handle, MemoryBatchStore)
