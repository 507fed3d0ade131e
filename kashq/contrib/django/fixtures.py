"""pytest fixtures for a Django project's tests (with pytest-django):
``pytest_plugins = ["kashq.contrib.django.fixtures"]`` in the ``conftest.py``.

- ``kashq_fake``: dispatching is recorded, nothing is queued
  (:func:`kashq.testing.fake`); assert with ``kashq_fake.assert_dispatched(...)``.
- ``kashq_worker``: jobs really go to kashq's queue (in the test database when
  kashq follows Django's); ``kashq_worker.drain()`` runs them in the test's
  thread, on its database connection, and returns the worker's counts. The
  queues it drained are emptied before and after the test when they are the test
  database's (or in memory); on Redis, or in a database of kashq's own, they are
  real queues, left alone.

A job dispatched inside ``transaction.atomic()`` is sent when the block commits,
which a test wrapped in a transaction never does: run the callbacks with
pytest-django's ``django_capture_on_commit_callbacks(execute=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kashq.manager import manager as current_manager
from kashq.testing import QueueFake, fake
from kashq.worker.outcome import WorkerStats


class KashqWorker:
    """Runs the queued jobs of the current manager, in the calling thread."""

    def __init__(self) -> None:
        self.drained: set[str] = set()

    def drain(self, *queues: str, **worker_options: Any) -> WorkerStats:
        """Run every job of ``queues`` (default: the default queue) that is due, then
        return the counts; a retry due later stays queued. ``worker_options``:
        :class:`~kashq.WorkerOptions` fields (``tries=1``, ...)."""
        manager = current_manager()
        names = queues or (manager.settings.queue,)
        self.drained.update(names)
        worker = manager.worker(queues=names, **worker_options)
        while worker.run_next() is not None:
            pass
        manager.write_records()  # a status read next sees the outcomes
        return worker.stats

    def clear(self) -> None:
        """Empty the queues drained (and the default one), when they are the test's own."""
        manager = current_manager()
        if not _test_s_own(manager.settings.connection):
            return
        for queue in self.drained | {manager.settings.queue}:
            manager.clear(queue)


def _test_s_own(connection: str) -> bool:
    """Whether ``connection``'s queues live only for the tests: in memory, or in the
    test database kashq follows."""
    from django.apps import apps

    if connection in ("memory", "sync"):
        return True
    follows = apps.get_app_config("kashq").followed.database_url is not None
    return connection == "database" and follows


@pytest.fixture
def kashq_fake() -> Iterator[QueueFake]:
    """Dispatching recorded, not queued."""
    with fake() as recorded:
        yield recorded


@pytest.fixture
def kashq_worker() -> Iterator[KashqWorker]:
    """A worker draining kashq's real queues in the test's thread."""
    worker = KashqWorker()
    worker.clear()  # what an earlier test left
    try:
        yield worker
    finally:
        worker.clear()
