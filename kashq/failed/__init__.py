"""Failed-job stores (the dead-letter queue)."""

from kashq.failed.base import FailedJob, FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore

__all__ = ["FailedJob", "FailedJobStore", "MemoryFailedJobStore"]
