"""How a worker hands each :class:`~kashq.jobevents.JobEvent` to its listeners.

Listeners run in the worker's thread, in the order they were added; one that
raises is logged and the worker goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kashq.clock import Clock
from kashq.drivers.base import Reservation
from kashq.envelope import Envelope
from kashq.jobevents import EventKind, JobEvent, Listener

log = logging.getLogger(__name__)


class Listeners:
    """The listeners of one worker, and how events reach them."""

    def __init__(self, listeners: Sequence[Listener], clock: Clock) -> None:
        self._listeners = list(listeners)
        self._clock = clock

    def add(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def emit(
        self,
        kind: EventKind,
        res: Reservation | None,
        env: Envelope | None,
        *,
        job_type: str | None = None,
        queue: str | None = None,
        **fields: Any,
    ) -> None:
        """Build the event (only if someone listens) and hand it to every listener."""
        if not self._listeners:
            return
        if job_type is None:
            job_type = env.type if env is not None else ""
        if queue is None:
            queue = env.queue if env is not None else (res.queue if res is not None else "")
        event = JobEvent(kind, res, env, job_type, queue, at=self._clock.time(), **fields)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("worker listener %r raised; going on", listener)
