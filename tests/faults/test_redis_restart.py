"""The first call after a Redis restart succeeds, on every path that talks to Redis.

A restart costs a long-lived process its open connections and the server's
script cache at once. Each test warms a client (connections open, scripts
loaded), restarts its private redis-server (or the cluster master holding
the keys), and checks that the very next call works: dispatch, dispatch_many,
locks, events, webhooks, a sharded connection and a Redis Cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kashq import Job, MemoryFailedJobStore, QueueManager, load_settings, webhooks
from kashq.drivers.redis import RedisDriver
from kashq.drivers.sharded import HashRing, shard_name
from kashq.events.base import Event
from kashq.events.redis import RedisEventStore
from kashq.exceptions import DriverError
from kashq.locks.redis import DistributedLock
from kashq.webhooks import WebhookHandler
from tests.support.http import uvicorn_serving
from tests.support.redis import delete_prefix
from tests.support.services import RedisClusterNodes, RedisServer

SECRET = "restart-secret"


class Ping(Job):
    n: int

    def handle(self) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF, so jobs and locks outlive its restarts."""
    redis_server = RedisServer(tmp_path, appendonly=True).start()
    try:
        yield redis_server
    finally:
        redis_server.stop()


def manager_on(**settings: str) -> QueueManager:
    return QueueManager(
        load_settings(events=False, prefix="restart", **settings),
        failed_store=MemoryFailedJobStore(),
    )


def waiting(manager: QueueManager) -> int:
    return manager.connection().sizes(["default"])["default"].ready


@pytest.mark.parametrize("how", ["dispatch", "dispatch_many"])
def test_the_first_dispatch_after_a_redis_restart_is_stored(server: RedisServer, how: str):
    manager = manager_on(connection="redis", redis_url=server.url)
    try:
        manager.dispatch(Ping(n=0))
        server.restart()
        if how == "dispatch":
            assert manager.dispatch(Ping(n=1)) is not None
        else:
            assert all(manager.dispatch_many([Ping(n=1), Ping(n=2)]))
        assert waiting(manager) == (2 if how == "dispatch" else 3)
    finally:
        manager.close()


def test_a_redis_that_stays_down_fails_the_call_at_once_with_one_error(server: RedisServer):
    manager = manager_on(connection="redis", redis_url=server.url)
    try:
        manager.dispatch(Ping(n=0))
        server.kill()
        started = time.monotonic()
        with pytest.raises(DriverError, match="refused") as raised:
            manager.dispatch(Ping(n=1))
        assert time.monotonic() - started < 5, "a refused connection is not waited on"
        assert "\n" not in str(raised.value)
    finally:
        manager.close()


def test_the_first_lock_calls_after_a_redis_restart_succeed(server: RedisServer):
    # One client per call, so that each call below is its client's first since the restart.
    clients = [DistributedLock(server.url, prefix="restart") for _ in range(4)]
    try:
        for locks in clients:  # connections open, scripts loaded
            locks.acquire("warm", 30).release()
            locks.hit("warm", 60)
        held = clients[0].acquire("held", 30)
        server.restart()
        assert clients[0].release_token("held", held.token) is True
        assert clients[1].try_acquire("fresh", 30) is not None
        assert clients[2].extend_token("fresh", "not-the-token", 30) is False
        assert clients[3].hit("warm", 60) == len(clients) + 1
    finally:
        for locks in clients:
            locks.close()


def test_the_first_event_store_calls_after_a_redis_restart_succeed(server: RedisServer):
    writer = RedisEventStore(server.url, prefix="restart")
    reader = RedisEventStore(server.url, prefix="restart")
    try:
        writer.append_encoded([_event("before")])
        assert len(reader.read()) == 1
        server.restart()
        writer.append_encoded([_event("after")])
        assert [event.job_id for event in reader.read()] == ["before", "after"]
    finally:
        writer.close()
        reader.close()


def test_the_first_webhook_after_a_redis_restart_is_queued(server: RedisServer):
    manager = manager_on(connection="redis", redis_url=server.url)
    handler = WebhookHandler(manager=manager)
    handler.register_job_webhook("/hook", "on_hook", secret=SECRET)
    try:
        with uvicorn_serving(webhooks.mount_asgi("/webhooks", handler.app)) as base:
            assert _post(base, "delivery-1") == (202, False)
            server.restart()
            assert _post(base, "delivery-2") == (202, False), "the sender's retry is taken"
        assert waiting(manager) == 2
    finally:
        manager.close()


def test_a_restarted_shard_takes_the_first_dispatch_and_is_never_marked_down(tmp_path: Path):
    servers = [RedisServer(tmp_path, appendonly=True).start() for _ in range(2)]
    manager = manager_on(
        connection="sharded", shards=",".join(s.url for s in servers), shard_strategy="hash"
    )
    try:
        ring = HashRing([shard_name(s.url) for s in servers])
        ids = [str(uuid.uuid4()) for _ in range(60)]
        owned = [job_id for job_id in ids if ring.index(job_id) == 1][:3]
        manager.dispatch_many([Ping(n=n) for n in range(20)])  # both shards warmed
        servers[1].restart()
        for n, job_id in enumerate(owned):  # the restarted shard's jobs, each confirmed
            manager.dispatch(Ping(n=n).with_id(job_id))
        assert not manager.connection().shards[1].down
        assert waiting(manager) == 23
    finally:
        manager.close()
        for redis_server in servers:
            redis_server.stop()


def test_the_first_calls_after_a_cluster_master_restarts_succeed(
    redis_cluster: RedisClusterNodes,
):
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    driver = RedisDriver(redis_cluster.url, prefix=prefix)
    bulk = RedisDriver(redis_cluster.url, prefix=prefix)
    locks = DistributedLock(redis_cluster.url, prefix=prefix)
    events = RedisEventStore(redis_cluster.url, prefix=prefix)
    calls: list[Callable[[], object]] = [
        lambda: driver.push(_envelope(1)),
        lambda: bulk.push_many([_envelope(2), _envelope(3)]),
        lambda: locks.hit("calls", 60),
        lambda: events.append_encoded([_event("cluster")]),
    ]
    try:
        for call in calls:
            call()
        slot = driver.client.keyslot(driver.keys("default").jobs)
        port = driver.client.nodes_manager.get_node_from_slot(slot).port
        master = next(node for node in redis_cluster.nodes if node.port == port)
        master.restart()  # the queue's master; its AOF keeps the jobs
        redis_cluster.wait_ok()
        for call in calls:
            call()
        assert driver.sizes(["default"])["default"].ready == 6
    finally:
        redis_cluster.wait_ok()
        delete_prefix(driver.client, prefix)
        for closing in (driver, bulk, locks, events):
            closing.close()


def _envelope(n: int):  # type: ignore[no-untyped-def]
    return Ping(n=n).to_envelope(default_queue="default", now=time.time())


def _event(job_id: str) -> str:
    return Event(type="dispatched", job_id=job_id, job_type="Ping", queue="default").encode()


def _post(base: str, delivery: str) -> tuple[int, bool]:
    import http.client
    from urllib.parse import urlsplit

    body = json.dumps({"delivery": delivery}).encode()
    headers = {
        "X-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "X-Webhook-Id": delivery,
    }
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request("POST", "/webhooks/hook", body=body, headers=headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        return response.status, answer.get("duplicate")
    finally:
        conn.close()
