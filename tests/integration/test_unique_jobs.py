"""Unique jobs on real Redis, SQLite and PostgreSQL: one queued copy, even across processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kashq import Job, MemoryFailedJobStore, QueueManager, load_settings
from tests.support.databases import database
from tests.support.processes import run_together, start_python
from tests.support.redis import redis_driver
from tests.support.services import REDIS_URL

ACCOUNTS = 20


class Account(Job):
    n: int
    unique_for = 120

    def handle(self) -> None:
        pass


class Refund(Job):
    n: int
    unique_for = 120
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("refused by the bank")


DISPATCHER = """
    import sys

    import kashq
    from tests.integration.test_unique_jobs import ACCOUNTS, Account

    kashq.configure(**dict(arg.split("=", 1) for arg in sys.argv[1:]))
    print("ready", flush=True)
    sys.stdin.readline()
    print(" ".join(Account(n=n).dispatch() or "none" for n in range(ACCOUNTS)), flush=True)
    kashq.manager().close()
"""


@pytest.fixture(params=["redis", "sqlite", "postgres", "mariadb"])
def settings(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[dict[str, str]]:
    """Settings of a fresh store: a Redis prefix (keys deleted after) or a database."""
    if request.param == "redis":
        with redis_driver() as driver:
            yield {"connection": "redis", "redis_url": REDIS_URL, "prefix": driver.prefix}
    else:
        with database(request.param, tmp_path, migrated=True) as url:
            yield {"connection": "database", "database_url": url}


def test_unique_jobs_dispatched_from_two_processes_at_once_are_queued_once(settings):
    args = [f"{name}={value}" for name, value in settings.items()]
    outputs = run_together([start_python(DISPATCHER, *args) for _ in range(2)])
    assert all(len(words) == ACCOUNTS for words in outputs), outputs
    for n in range(ACCOUNTS):
        got = [words[n] for words in outputs]
        assert got.count("none") == 1, got  # one process queued it, the other was refused
    manager = QueueManager(load_settings(**settings), failed_store=MemoryFailedJobStore())
    try:
        assert manager.connection().sizes(["default"])["default"].ready == ACCOUNTS
    finally:
        manager.close()


def test_unique_job_can_be_dispatched_again_after_a_worker_completed_it(settings):
    manager = QueueManager(load_settings(**settings), failed_store=MemoryFailedJobStore())
    try:
        first = manager.dispatch(Account(n=1))
        assert first is not None
        assert manager.dispatch(Account(n=1)) is None
        ids = manager.dispatch_many([Account(n=1), Account(n=2), Account(n=2)])
        assert ids[0] is None and ids[1] is not None and ids[2] is None
        worker = manager.worker(stop_when_empty=True, sleep_s=0.05)
        worker.run(1)
        assert worker.stats.completed == 2
        second = manager.dispatch(Account(n=1))
        assert second is not None and second != first
    finally:
        manager.close()


def test_clearing_a_queue_frees_the_unique_claims_of_the_jobs_it_removed(settings):
    manager = QueueManager(load_settings(**settings), failed_store=MemoryFailedJobStore())
    try:
        manager.dispatch(Account(n=1))
        manager.dispatch(Account(n=2).delay(600))
        manager.dispatch(Account(n=3).on_queue("other"))
        assert manager.dispatch(Account(n=1)) is None

        assert manager.clear("default") == 2

        assert manager.dispatch(Account(n=1)) is not None  # not refused for unique_for
        assert manager.dispatch(Account(n=2)) is not None
        assert manager.dispatch(Account(n=3)) is None  # its queue was not cleared
    finally:
        manager.close()


def test_a_unique_job_that_failed_for_good_holds_no_claim(settings):
    store = MemoryFailedJobStore()
    manager = QueueManager(load_settings(**settings), failed_store=store)
    try:
        assert manager.dispatch(Refund(n=1)) is not None
        manager.worker(stop_when_empty=True, sleep_s=0.05).run(1)
        assert store.count() == 1

        assert manager.dispatch(Refund(n=1)) is not None  # the failure freed it
        assert store.flush() == 1
        assert manager.dispatch(Refund(n=1)) is None  # the queued copy holds it again
    finally:
        manager.close()
