"""A hung Redis (a SIGSTOPped private redis-server) never hangs kashq.

The server keeps its port and accepts connections but answers nothing, as a
hung host or a cut link does. No reply is awaited longer than the Redis
driver's reply timeout: ``dispatch()`` fails with one ``DriverError``, a
worker's loop keeps turning (it logs that the queue is unavailable), and once
the server goes on every job dispatched runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kashq import Job, MemoryFailedJobStore, QueueManager, Worker, WorkerOptions, load_settings
from kashq.drivers.redis.client import REPLY_TIMEOUT_S
from kashq.exceptions import DriverError
from tests.support.services import RedisServer

RAN: list[int] = []
_GENEROUS_S = 6 * REPLY_TIMEOUT_S  # a bound that tells "fails after a timeout" from "hangs"


class Counted(Job):
    n: int

    def handle(self) -> None:
        RAN.append(self.n)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    redis_server = RedisServer(tmp_path).start()
    try:
        yield redis_server
    finally:
        redis_server.resume()
        redis_server.stop()


@pytest.fixture
def manager(server: RedisServer) -> Iterator[QueueManager]:
    """A manager on the private server, with the default reply timeout (none in the URL)."""
    RAN.clear()
    queue_manager = QueueManager(
        load_settings(connection="redis", redis_url=server.url, prefix="hung", events=False),
        failed_store=MemoryFailedJobStore(),
    )
    yield queue_manager
    queue_manager.close()


def outcome_within(call: Callable[[], object], timeout_s: float) -> BaseException | None:
    """Run ``call`` in a thread; its exception (None if it returned); fail if it hangs."""
    box: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            box.append(None)
        except BaseException as exc:  # the outcome under test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert box, f"still blocked after {timeout_s:g}s: no reply timeout"
    return box[0]


def test_dispatch_to_a_hung_redis_fails_after_the_reply_timeout(server, manager):
    manager.dispatch(Counted(n=0))  # connected, scripts loaded
    server.pause()
    started = time.monotonic()

    error = outcome_within(lambda: manager.dispatch(Counted(n=1)), _GENEROUS_S)

    took_s = time.monotonic() - started
    assert isinstance(error, DriverError), error
    assert "Timeout" in str(error)
    assert took_s < 2 * REPLY_TIMEOUT_S, f"one timeout, not one per attempt: {took_s:.1f}s"


def test_a_worker_rides_out_a_hung_redis_and_every_job_runs(server, manager, caplog):
    driver = manager.connection()
    # An idle worker waits longer than the reply timeout: a healthy Redis is no error.
    # A reserve that timed out may still run once the server goes on, holding a job for
    # nobody until its lease lapses: a short lease keeps the test short.
    options = WorkerOptions(sleep_s=REPLY_TIMEOUT_S + 1, lease_s=3.0)
    first = Worker(driver, MemoryFailedJobStore(), options).start(2)
    try:
        confirmed = [manager.dispatch(Counted(n=n)) for n in range(5)]
        _wait_for(lambda: sorted(RAN) == list(range(5)))
        with caplog.at_level(logging.WARNING, logger="kashq.worker.worker"):
            time.sleep(options.sleep_s + 1)  # one whole idle wait
            assert "queue unavailable" not in caplog.text
            server.pause()
            unconfirmed = outcome_within(lambda: manager.dispatch(Counted(n=99)), _GENEROUS_S)
            _wait_for(lambda: "queue unavailable" in caplog.text)  # the loop turned
            first.stop(_GENEROUS_S)
            assert not first.running, "a worker thread is stuck on the hung server"
        server.resume()
        confirmed += [manager.dispatch(Counted(n=n)) for n in range(5, 10)]
        second = Worker(driver, MemoryFailedJobStore(), options).start(2)
        _wait_for(lambda: set(range(10)) <= set(RAN))  # every job dispatched ran
        _wait_for(lambda: driver.sizes(["default"])["default"].total == 0)  # none stuck
        second.stop()
    finally:
        server.resume()
        first.stop()
    assert isinstance(unconfirmed, DriverError)
    assert all(confirmed)


def _wait_for(condition: Callable[[], bool], timeout_s: float = _GENEROUS_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
