"""The queue manager wires connections and stores, closes what it built, and is current."""

from __future__ import annotations

import importlib

import pytest

import kashq
from kashq import Job, MemoryFailedJobStore, QueueManager, load_settings
from kashq.manager import configure, manager, swap_manager


class Report(Job):
    def handle(self) -> None:
        pass


class ClosingStore(MemoryFailedJobStore):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_close_closes_the_failed_stores_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module("kashq.manager")  # ``kashq.manager`` is the function
    monkeypatch.setattr(module, "MemoryFailedJobStore", ClosingStore)
    built = QueueManager(load_settings(connection="memory"))
    store = built.failed_store()
    assert isinstance(store, ClosingStore)

    built.close()

    assert store.closed == 1
    assert built.failed_store() is store  # still this manager's: its records stay readable


def test_close_leaves_a_store_it_was_given_open() -> None:
    given = ClosingStore()
    manager = QueueManager(load_settings(connection="memory"), failed_store=given)
    assert manager.failed_store() is given

    manager.close()

    assert given.closed == 0


def test_configure_makes_a_manager_current_and_closes_the_one_it_replaces() -> None:
    first = configure(connection="memory")
    first_store = first.failed_store()
    first.dispatch(Report())

    second = configure(connection="memory")

    assert manager() is second is kashq.manager()
    assert first.connection().sizes(["default"])["default"].ready == 0  # closed: a new driver
    assert first.failed_store() is first_store


def test_swap_manager_makes_one_current_without_closing_the_other() -> None:
    current = configure(connection="memory")
    current.dispatch(Report())
    other = QueueManager(load_settings(connection="memory"))

    assert swap_manager(other) is current

    assert manager() is other
    assert current.connection().sizes(["default"])["default"].ready == 1  # still open
    current.close()
