"""What a worker tells its listeners: one :class:`JobEvent` per step of a job.

Listeners are plain callables given to :class:`kashq.Worker` (``listeners=``
or :meth:`~kashq.Worker.add_listener`). They run in the worker's thread, so
they must be quick; one that raises is logged and the worker goes on. The
``queue:work`` output, the process supervisor's bookkeeping, metrics and
the event log are all listeners. This module is the vocabulary they share
with the worker; it knows neither side.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from kashq.drivers.base import Reservation
from kashq.envelope import Envelope


class EventKind(enum.Enum):
    """The steps of a job as seen by a worker."""

    STARTED = "started"  # handle() is about to run
    RAN = "ran"  # handle() returned or raised; the outcome is being settled
    COMPLETED = "completed"  # handle() returned; acknowledged (or with the next reserve)
    RETRIED = "retried"  # the attempt failed; released with a backoff
    FAILED = "failed"  # failed for good and recorded in the failed-job store
    PARKED = "parked"  # failed for good; the store was unreachable, recorded later
    IDLE = "idle"  # a reserve returned nothing (no reservation in the event)
    PROGRESS = "progress"  # handle() reported how far it got (self.progress())
    ABORTING = "aborting"  # the running job was cancelled: it is told, then killed after a grace
    CANCELLED = "cancelled"  # cancelled: acknowledged without running, or its attempt stopped
    EXPIRED = "expired"  # not started before its expiry: acknowledged without running


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One step of one job.

    ``attempt`` is the attempt number the event is about (1 for the first
    run). ``duration_s`` is how long ``handle()`` ran (finished events);
    ``timeout_s`` the limit that applies (STARTED); ``delay_s`` the backoff
    before the retry (RETRIED); ``error`` one line (RETRIED, FAILED, PARKED);
    ``progress`` (0 to 1) and ``message`` what the job reported (PROGRESS).
    ``envelope`` is None when the stored job could not be decoded.
    """

    kind: EventKind
    reservation: Reservation | None
    envelope: Envelope | None
    job_type: str
    queue: str
    attempt: int = 0
    at: float = 0.0
    duration_s: float | None = None
    timeout_s: float | None = None
    delay_s: float | None = None
    error: str | None = None
    progress: float | None = None
    message: str | None = None

    @property
    def recording_again(self) -> bool:
        """A FAILED or PARKED event of a failure already reported by a PARKED event.

        The failed-job store was unreachable when the job failed for good; this
        is one more attempt at recording that failure (the parked envelope
        carries it), not a new failure.
        """
        return self.envelope is not None and self.envelope.failure is not None

    @property
    def job_id(self) -> str:
        if self.envelope is not None:
            return self.envelope.id
        return self.reservation.id if self.reservation is not None else ""


Listener = Callable[[JobEvent], None]


EVERY_WORKER: list[Listener] = []
"""Listeners every worker a queue manager of this process builds gets (see
:func:`listen_to_every_worker`)."""


def listen_to_every_worker(listener: Listener) -> None:
    """Give ``listener`` the events of every worker a manager of this process builds from
    now on: an app framework's upkeep around each job (Django's stale connections)."""
    if listener not in EVERY_WORKER:
        EVERY_WORKER.append(listener)
