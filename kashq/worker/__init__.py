"""The worker: the consume loop and the retry/fail policy."""

from kashq.exceptions import WorkerLost
from kashq.jobevents import EventKind, JobEvent, Listener
from kashq.worker.options import WorkerOptions
from kashq.worker.worker import Outcome, Worker, WorkerStats

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
