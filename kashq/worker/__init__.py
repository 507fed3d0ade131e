"""The worker: the consume loop and the retry/fail policy."""

from typing import TYPE_CHECKING, Any

from kashq.exceptions import WorkerLost
from kashq.jobevents import EventKind, JobEvent, Listener
from kashq.worker.options import WorkerOptions
from kashq.worker.outcome import Outcome, WorkerStats

if TYPE_CHECKING:
    from kashq.worker.worker import Worker

__all__ = [
    "EventKind",
    "JobEvent",
    "Listener",
    "Outcome",
    "Worker",
    "WorkerLost",
    "WorkerOptions",
    "WorkerStats",
]


def __getattr__(name: str) -> Any:
    # The loop loads with the first worker: its options and events come without it.
    if name == "Worker":
        from kashq.worker.worker import Worker

        globals()["Worker"] = Worker
        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
