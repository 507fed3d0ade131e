"""The queue manager wires connections and stores, and closes what it built."""

from __future__ import annotations

import importlib

import pytest

from kashq import MemoryFailedJobStore, QueueManager, load_settings


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
