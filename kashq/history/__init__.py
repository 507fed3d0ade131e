"""Metrics history: throughput, failures, run and wait times per minute, queue and job type.

:func:`store_for` gives the store sharing the storage of a connection: a hash
per minute and per quarter of an hour in Redis (a sharded connection uses its
first shard), the ``job_history`` table, or memory for the memory and sync
drivers. Workers
feed it through a :class:`~kashq.history.recorder.HistoryRecorder`; the
dashboard reads it. ``KASHQ_KEEP_HISTORY`` sets how long a minute is kept (0:
no history) and ``KASHQ_HISTORY_SERIES_MAX`` how many (queue, job type)
series one minute (or quarter) holds; see :mod:`kashq.history.base` for the
storage bound.
"""

from __future__ import annotations

from typing import Any

from kashq.config import Settings
from kashq.history.base import (
    FIGURES,
    OTHER,
    HistoryStore,
    HistoryStoreError,
    MinuteFigures,
    Tally,
)
from kashq.history.memory import MemoryHistoryStore
from kashq.stores import Shelf, storage_of

__all__ = [
    "FIGURES",
    "OTHER",
    "HistoryStore",
    "HistoryStoreError",
    "MemoryHistoryStore",
    "MinuteFigures",
    "Tally",
    "store_for",
]

_MEMORY: Shelf[MemoryHistoryStore] = Shelf()


def store_for(driver: object, settings: Settings) -> HistoryStore:
    """The metrics history sharing ``driver``'s storage, kept ``settings.keep_history`` seconds.

    Chosen by the driver's :class:`~kashq.drivers.base.Storage`, never by its class.
    """
    keep_s, series_max = settings.keep_history, settings.history_series_max
    storage = storage_of(driver)
    if storage is None:
        return _MEMORY.get(driver, lambda: MemoryHistoryStore(keep_s=keep_s, series_max=series_max))
    handle: Any = storage.handle
    if storage.kind == "redis":
        from kashq.history.redis import RedisHistoryStore

        return RedisHistoryStore(
            handle, prefix=storage.prefix, clock=storage.clock, keep_s=keep_s,
            series_max=series_max,
        )  # fmt: skip
    if storage.kind == "database":
        from kashq.history.database import DatabaseHistoryStore

        return DatabaseHistoryStore(
            handle, clock=storage.clock, keep_s=keep_s, series_max=series_max
        )
    return _MEMORY.get(
        handle, lambda: MemoryHistoryStore(storage.clock, keep_s=keep_s, series_max=series_max)
    )
