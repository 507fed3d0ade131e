"""The worker: the consume loop and the retry/fail policy."""

from kashq.worker.options import WorkerOptions
from kashq.worker.worker import Outcome, Worker, WorkerLost, WorkerStats

__all__ = ["Outcome", "Worker", "WorkerLost", "WorkerOptions", "WorkerStats"]
