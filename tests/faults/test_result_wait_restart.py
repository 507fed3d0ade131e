"""Waiting for a result across a Redis restart, a Redis that stays down, and a hung Redis.

A wait under way rides out a lost Redis until its deadline: a restart costs it
nothing, and a Redis still unreachable at the deadline ends it with one
:class:`ResultStoreError` line (never a hang, never a None that would claim the
job has no outcome). Each test runs its own redis-server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kashq.envelope import new_job_id
from kashq.results import ResultStoreError, StoredResult
from kashq.results.redis import RedisResultStore
from tests.support.services import RedisServer
from tests.support.waiting import eventually

JOIN_S = 30.0  # generous: only a hung wait takes this long


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF, so a result put before a restart outlives it."""
    redis_server = RedisServer(tmp_path, appendonly=True).start()
    try:
        yield redis_server
    finally:
        redis_server.resume()  # (if a test paused it)
        redis_server.stop()


class Waiter:
    """A thread running ``store.wait(job_id, timeout_s)``; what it returned or raised."""

    def __init__(self, store: RedisResultStore, job_id: str, timeout_s: float) -> None:
        self.outcome: list[object] = []
        self.thread = threading.Thread(target=self._run, args=(store, job_id, timeout_s))
        self.thread.daemon = True
        self.thread.start()

    def _run(self, store: RedisResultStore, job_id: str, timeout_s: float) -> None:
        try:
            self.outcome.append(store.wait(job_id, timeout_s))
        except Exception as exc:  # the test looks at what it was
            self.outcome.append(exc)

    def finish(self) -> object:
        self.thread.join(JOIN_S)
        assert not self.thread.is_alive(), "the wait hung"
        [what] = self.outcome
        return what


def blocked_in_xread(client: redis.Redis) -> bool:
    """Whether some connection of ``client``'s server is blocked in XREAD."""
    return any(entry.get("cmd") == "xread" for entry in client.client_list())


def test_a_wait_survives_a_redis_restart_and_returns_the_result_put_after_it(server):
    waiting = RedisResultStore(server.url, prefix="restart")
    job_id = new_job_id()
    waiter = Waiter(waiting, job_id, 60)
    observer = redis.Redis.from_url(server.url)
    try:
        assert eventually(lambda: blocked_in_xread(observer), JOIN_S), "the waiter never blocked"
        server.restart()
        writer = RedisResultStore(server.url, prefix="restart")
        writer.put(StoredResult(job_id, status="completed", value='"done"'), 60)
        writer.close()
        found = waiter.finish()
        assert isinstance(found, StoredResult), found
        assert (found.status, found.value) == ("completed", '"done"')
    finally:
        observer.close()
        waiting.close()


def test_a_wait_whose_deadline_passes_while_redis_is_down_raises_one_error_line(server):
    waiting = RedisResultStore(server.url, prefix="restart")
    observer = redis.Redis.from_url(server.url)
    try:
        waiter = Waiter(waiting, new_job_id(), 5.0)
        assert eventually(lambda: blocked_in_xread(observer), JOIN_S), "the waiter never blocked"
        server.kill()
        raised = waiter.finish()
        assert isinstance(raised, ResultStoreError), raised
        assert server.url.rpartition("/")[0] in str(raised) and "\n" not in str(raised)
    finally:
        observer.close()
        waiting.close()


def test_a_wait_on_a_redis_that_is_down_from_the_start_fails_at_once(server):
    waiting = RedisResultStore(server.url, prefix="restart")
    server.kill()
    try:
        with pytest.raises(ResultStoreError, match="refused"):
            waiting.wait(new_job_id(), 60)
    finally:
        waiting.close()


def test_a_wait_on_a_hung_redis_ends_with_an_error_instead_of_hanging(server):
    waiting = RedisResultStore(server.url, prefix="restart")
    observer = redis.Redis.from_url(server.url)
    try:
        waiter = Waiter(waiting, new_job_id(), 5.0)
        assert eventually(lambda: blocked_in_xread(observer), JOIN_S), "the waiter never blocked"
        server.pause()  # accepts connections, never answers
        raised = waiter.finish()
        assert isinstance(raised, ResultStoreError), raised
    finally:
        server.resume()
        observer.close()
        waiting.close()
