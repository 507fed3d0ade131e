"""What processing one job ends in, and the worker's running counts of those outcomes."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """What processing one reservation ended in."""

    COMPLETED = "completed"
    RETRIED = "retried"  # released for a later attempt (a backoff, or a middleware's release)
    FAILED = "failed"
    PARKED = "parked"  # failed for good, waiting for the failed-job store
    CANCELLED = "cancelled"  # cancelled by an operator: not run, or stopped while running
    EXPIRED = "expired"  # not started before its expiry: dropped unrun


@dataclass(slots=True)
class WorkerStats:
    """Counts of outcomes since the worker was built."""

    completed: int = 0
    retried: int = 0
    failed: int = 0
    parked: int = 0
    cancelled: int = 0
    expired: int = 0

    @property
    def processed(self) -> int:
        return (
            self.completed + self.retried + self.failed + self.parked + self.cancelled
            + self.expired
        )  # fmt: skip

    def add(self, other: WorkerStats) -> None:
        """Add ``other``'s counts to these."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.COMPLETED:
            self.completed += 1
        elif outcome is Outcome.RETRIED:
            self.retried += 1
        elif outcome is Outcome.FAILED:
            self.failed += 1
        elif outcome is Outcome.PARKED:
            self.parked += 1
        elif outcome is Outcome.CANCELLED:
            self.cancelled += 1
        else:
            self.expired += 1
