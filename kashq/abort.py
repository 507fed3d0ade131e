"""How a running job learns it was cancelled: the :class:`AbortSignal` of its attempt.

The worker gives every attempt one (in its :class:`~kashq.middleware.JobContext`).
The worker's controls thread sets it when it reads the job's cancel marker;
the job meets it at its cooperative checks (``self.cancelled()``,
``self.progress()``), which raise :class:`~kashq.JobCancelled`, and an async
``handle()`` at its next ``await``: its task is cancelled from the worker's
thread. Checking costs an attribute read: no round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, ClassVar

from kashq.exceptions import JobCancelled


class AbortSignal:
    """One attempt's stop request: set once, by another thread; checked by the job."""

    __slots__ = ("_loop", "_task", "raised", "requested", "started")

    # One lock for all signals: requests are rare, and a lock per attempt would be
    # paid by every job.
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.started = False  # handle() was called (the worker's listeners know it runs)
        self.requested = False  # an operator cancelled the job
        self.raised = False  # the job was told (a check raised, or its task was cancelled)
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self) -> bool:
        """Ask the attempt to stop; False if it was asked already."""
        with self._lock:
            if self.requested:
                return False
            self.requested = True
            task, loop = self._task, self._loop
        if task is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the handler ended
                loop.call_soon_threadsafe(task.cancel)
        return True

    def check(self) -> None:
        """Raise :class:`~kashq.JobCancelled` if the attempt was asked to stop."""
        if self.requested:
            self.raised = True
            raise JobCancelled()

    def attach(self, task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop) -> None:
        """The async handler runs as ``task`` on ``loop``: a request cancels it."""
        with self._lock:
            self._task, self._loop = task, loop
            requested = self.requested
        if requested:
            task.cancel()

    def detach(self) -> None:
        with self._lock:
            self._task = self._loop = None
