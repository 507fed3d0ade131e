"""Queue drivers: ``memory`` and ``sync`` here, durable ones beside them."""

from kashq.drivers.base import Driver, QueueSizes, Reservation
from kashq.drivers.memory import MemoryDriver
from kashq.drivers.sync import SyncDriver

__all__ = ["Driver", "MemoryDriver", "QueueSizes", "Reservation", "SyncDriver"]
