"""Choosing a store by the storage of the driver it goes with.

Result stores, event stores, lock backends and the like share their
connection's storage (:class:`~kashq.drivers.base.Storage`): Redis keys under
its prefix, tables on its engine, or, for the memory driver, objects in this
process. A memory store's state lives in the object, so everyone on one
driver must get the same one: :class:`Shelf` keeps one per owner, weakly (a
driver that is gone takes its stores with it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from kashq.drivers.base import Storage

T = TypeVar("T")


def storage_of(driver: object) -> Storage | None:
    """``driver.storage``, or None for a driver that states none (a test double's)."""
    storage = getattr(driver, "storage", None)
    return storage if isinstance(storage, Storage) else None


class Shelf(Generic[T]):
    """One object per owner, built on first use and kept while the owner lives."""

    def __init__(self) -> None:
        self._kept: weakref.WeakKeyDictionary[Any, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, owner: object, build: Callable[[], T]) -> T:
        """The object kept for ``owner``; ``build()`` makes it the first time."""
        with self._lock:
            kept = self._kept.get(owner)
            if kept is None:
                kept = self._kept[owner] = build()
            return kept
