"""Queue drivers: ``memory`` and ``sync`` here, durable ones beside them.

Importing this package loads no driver: each driver class is imported when
first named, so the driver protocol (:mod:`kashq.drivers.base`) and the stores
that share a driver's storage never load a driver they do not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kashq.drivers.base import Driver, QueueSizes, Reservation

if TYPE_CHECKING:
    from kashq.drivers.memory import MemoryDriver
    from kashq.drivers.sync import SyncDriver

__all__ = ["Driver", "MemoryDriver", "QueueSizes", "Reservation", "SyncDriver"]


def __getattr__(name: str) -> Any:
    if name == "MemoryDriver":
        from kashq.drivers.memory import MemoryDriver

        return MemoryDriver
    if name == "SyncDriver":
        from kashq.drivers.sync import SyncDriver

        return SyncDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
