"""A batch's steps as events for the event log (``queue:tail`` shows them)."""

from __future__ import annotations

from collections.abc import Callable

from kashq.events.recorder import BatchStep
from kashq.workflows.batches.base import BatchRecord

StepSink = Callable[[BatchStep], None]
"""Where steps go: an :class:`~kashq.events.EventRecorder`'s ``batch``."""


def step(kind: str, record: BatchRecord, at: float) -> BatchStep:
    """The event of ``record`` reaching step ``kind`` (``batch_created``...), with its counts."""
    details = {
        "total": record.total,
        "processed": record.done,
        "failed": record.failed,
        "pending": record.pending,
    }
    return BatchStep(kind, record.id, record.name, at, details)
