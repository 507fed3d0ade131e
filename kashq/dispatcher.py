"""Where ``job.dispatch()`` goes: the current dispatcher.

Normally that is the current :class:`~kashq.manager.QueueManager` (set with
:func:`configure`, or built from settings on first dispatch). Tests swap in a
fake with :func:`kashq.testing.fake`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from kashq.exceptions import JobDefinitionError
from kashq.job import Delay, Dispatchable, NamedJob
from kashq.manager import QueueManager


class Dispatcher(Protocol):
    """Anything that can take jobs: the queue manager, or a test fake."""

    def dispatch(self, job: Dispatchable) -> str | None: ...

    def dispatch_many(self, jobs: Iterable[Dispatchable]) -> Sequence[str | None]: ...


_lock = threading.Lock()
_manager: QueueManager | None = None
_override: Dispatcher | None = None


def configure(manager: QueueManager | None = None, **settings: Any) -> QueueManager:
    """Make ``manager`` (or one built from settings plus ``settings`` overrides) current."""
    from kashq.config import load_settings

    new = manager or QueueManager(load_settings(origin="kashq.configure()", **settings))
    old = swap_manager(new)
    if old is not None and old is not new:
        old.close()
    return new


def manager() -> QueueManager:
    """The current queue manager, built from settings if none was configured."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = QueueManager()
        return _manager


def swap_manager(new: QueueManager | None) -> QueueManager | None:
    """Make ``new`` current without closing the old one; returns the old one."""
    global _manager
    with _lock:
        old, _manager = _manager, new
    return old


def get_dispatcher() -> Dispatcher:
    """The fake installed by a test, else the current manager."""
    return _override if _override is not None else manager()


def set_dispatcher(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """Route dispatches to ``dispatcher`` (None restores the manager); returns the previous."""
    global _override
    with _lock:
        previous, _override = _override, dispatcher
    return previous


def dispatch(
    job: Dispatchable | str,
    payload: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    connection: str | None = None,
    priority: int | None = None,
    tries: int | None = None,
    delay: Delay | None = None,
    metadata: dict[str, Any] | None = None,
) -> str | None:
    """Dispatch a Job, or a named job: ``dispatch("send_email", {"to": ...})``."""
    if isinstance(job, str):
        job = NamedJob(job, payload)
    elif payload is not None:
        raise TypeError("a payload is only given with a job name; a Job carries its own")
    _check_dispatchable(job)
    if queue is not None:
        job.on_queue(queue)
    if connection is not None:
        job.on_connection(connection)
    if priority is not None:
        job.with_priority(priority)
    if tries is not None:
        job.with_max_retries(tries)
    if delay is not None:
        job.delay(delay)
    if metadata:
        job.with_metadata(**metadata)
    return job.dispatch()


def dispatch_after(job: Dispatchable, delay: Delay) -> str | None:
    """Dispatch ``job`` to run after ``delay`` (seconds or timedelta)."""
    return _check_dispatchable(job).dispatch_after(delay)


def dispatch_at(job: Dispatchable, when: datetime) -> str | None:
    """Dispatch ``job`` to run at ``when``."""
    return _check_dispatchable(job).dispatch_at(when)


def dispatch_many(jobs: Iterable[Dispatchable]) -> list[str | None]:
    """Dispatch several jobs in one round trip per connection where the driver can.

    Returns their ids in order; None for a unique job that was already queued.
    """
    return list(get_dispatcher().dispatch_many([_check_dispatchable(job) for job in jobs]))


def _check_dispatchable(job: object) -> Dispatchable:
    """``job`` if it can be dispatched, else a one-line error saying what can."""
    if not isinstance(job, Dispatchable):
        raise JobDefinitionError(
            f"cannot dispatch {type(job).__name__} {job!r:.60}: dispatch a Job instance, "
            "a NamedJob, or a job name with its payload"
        )
    return job
