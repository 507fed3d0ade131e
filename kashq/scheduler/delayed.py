"""GoFlow's delayed jobs: :class:`Scheduler` with ``schedule_at`` / ``schedule_in``.

A delayed job is an ordinary job whose ``available_at`` lies in the future;
every driver keeps it aside and hands it out once due (±1 s on the durable
drivers, surviving restarts). So delayed jobs need no separate process: the
workers that reserve jobs promote due ones (the memory driver's idle workers
wake exactly when the earliest delayed job is due).

What :meth:`Scheduler.start` adds is the recurring schedules
(:mod:`kashq.scheduler.recurring`), fired by a
:class:`~kashq.scheduler.runner.ScheduleRunner` in a background thread of this
process: Celery's ``worker -B``. It is how schedules run with the memory
driver, whose jobs cannot leave the process; with the durable drivers, run
``kashq schedule:work`` instead (or as well: every tick still fires once).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from types import TracebackType

from kashq.job import Dispatchable, delay_seconds
from kashq.manager import QueueManager
from kashq.manager import manager as current_manager
from kashq.scheduler.cron import ScheduleError
from kashq.scheduler.recurring import Schedule
from kashq.scheduler.runner import ScheduleRunner


class Scheduler:
    """Delayed dispatch through a queue manager, and recurring schedules in a thread.

    ``manager_or_connection``: a :class:`QueueManager`; a connection name
    (``"redis"``...) on the current manager; or None for the current manager
    and its default connection. Without a manager, jobs go through the current
    dispatcher, so ``kashq.testing.fake()`` records them.
    """

    def __init__(
        self,
        manager_or_connection: QueueManager | str | None = None,
        *,
        registry: Schedule | None = None,
    ) -> None:
        if isinstance(manager_or_connection, QueueManager):
            self._manager: QueueManager | None = manager_or_connection
            self.connection: str | None = None
        elif manager_or_connection is None or isinstance(manager_or_connection, str):
            self._manager, self.connection = None, manager_or_connection
        else:
            given = manager_or_connection
            raise TypeError(f"expected a QueueManager or a connection name, got {given!r}")
        self.registry = registry
        self._runner: ScheduleRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def manager(self) -> QueueManager:
        """The manager given, else the current one (``kashq.configure``)."""
        if self._manager is not None:
            return self._manager
        return current_manager()

    # -- delayed jobs ---------------------------------------------------
    def schedule_at(self, job: Dispatchable, when: datetime) -> str | None:
        """Dispatch ``job`` to run at ``when`` (a naive datetime is local time); returns its id.

        None, as with ``dispatch()``, when a unique job's equal is already queued.
        """
        if not isinstance(when, datetime):
            raise ScheduleError(f"schedule_at() takes a datetime, got {when!r}")
        # As Dispatchable.dispatch_at does; a time already past is due now (runs at once).
        options = job._opts()
        options.available_at, options.delay_s = when.timestamp(), None
        return self._dispatch(job)

    def schedule_in(self, job: Dispatchable, delay: float | timedelta) -> str | None:
        """Dispatch ``job`` to run after ``delay`` (seconds or a timedelta); returns its id."""
        try:
            job.delay(delay_seconds(delay))
        except ValueError as exc:
            raise ScheduleError(str(exc)) from None
        return self._dispatch(job)

    def _dispatch(self, job: Dispatchable) -> str | None:
        if self.connection is not None and job.target_connection() is None:
            job.on_connection(self.connection)
        if self._manager is not None:
            return self._manager.dispatch(job)
        from kashq.dispatcher import get_dispatcher

        return get_dispatcher().dispatch(job)  # honours kashq.testing.fake()

    # -- recurring schedules --------------------------------------------
    def start(self) -> Scheduler:
        """Fire the recurring schedules from a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return self
        name = self.connection or self.manager.settings.connection
        self._runner = ScheduleRunner(self.manager, self.registry, connection=name)
        self._thread = threading.Thread(
            target=self._runner.run, name="kashq-scheduler", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the schedule thread (after the entry it is firing) and wait for it."""
        if self._runner is not None:
            self._runner.stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._runner = self._thread = None

    @property
    def running(self) -> bool:
        """Whether the schedule thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
