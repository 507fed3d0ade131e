"""``queue:work`` end to end on the scale-out connections: ``sharded`` and a Redis Cluster.

The sharded tests use the session's three private redis-servers; the cluster
tests its local three-master Redis Cluster, one of whose masters is restarted
while workers run.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.work_app import App, make_app
from tests.support.redis import delete_prefix
from tests.support.services import RedisClusterNodes, RedisServer


def jobs_per_shard(urls: list[str], prefix: str) -> list[int]:
    counts = []
    for url in urls:
        client = redis.Redis.from_url(url)
        counts.append(int(client.hlen(f"{prefix}:{{default}}:jobs")))
        client.close()
    return counts


@pytest.fixture
def sharded_app(tmp_path: Path, redis_shards: list[str]) -> Iterator[App]:
    prefix = f"kashq-e2e-{uuid.uuid4().hex[:10]}"
    with make_app(tmp_path, "sqlite") as app:
        app.env.update(
            KASHQ_CONNECTION="sharded",
            KASHQ_SHARDS=",".join(redis_shards),
            KASHQ_SHARD_STRATEGY="round_robin",
            KASHQ_PREFIX=prefix,
        )
        try:
            yield app
        finally:
            for url in redis_shards:
                delete_prefix(redis.Redis.from_url(url), prefix)


@pytest.fixture
def cluster_app(tmp_path: Path, redis_cluster: RedisClusterNodes) -> Iterator[App]:
    prefix = f"kashq-e2e-{uuid.uuid4().hex[:10]}"
    with make_app(tmp_path, "sqlite") as app:
        app.env.update(
            KASHQ_CONNECTION="redis", KASHQ_REDIS_URL=redis_cluster.url, KASHQ_PREFIX=prefix
        )
        try:
            yield app
        finally:
            redis_cluster.wait_ok()
            client = redis.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
            delete_prefix(client, prefix)
            client.close()


# --------------------------------------------------------------------------- sharded


def test_sharded_workers_run_every_job_of_every_shard_exactly_once(
    sharded_app: App, redis_shards: list[str]
) -> None:
    ids = sharded_app.dispatch("[j.Record(n=i) for i in range(300)]")
    assert jobs_per_shard(redis_shards, sharded_app.env["KASHQ_PREFIX"]) == [100, 100, 100]
    size = sharded_app.kashq("queue:size", "--json")
    assert json.loads(size.stdout)["default"]["ready"] == 300, size.stderr
    monitor = sharded_app.kashq("queue:monitor", "--once", "--json", "--max", "299")
    assert monitor.returncode == 1, "300 jobs over all shards pass --max 299"
    assert "300" in monitor.stdout

    code, output = sharded_app.work("sharded", "--workers", "2", "--stop-when-empty", "--quiet")

    assert code == 0, output
    assert sharded_app.ledger() == dict.fromkeys(ids, 1)
    assert jobs_per_shard(redis_shards, sharded_app.env["KASHQ_PREFIX"]) == [0, 0, 0]


def test_sharded_failed_jobs_are_listed_and_retried_onto_the_shards(sharded_app: App) -> None:
    (sharded_app.root / "fail.flag").touch()
    ids = sharded_app.dispatch("[j.Flaky() for _ in range(3)]")

    code, output = sharded_app.work("--stop-when-empty", "--quiet")

    assert code == 0, output
    failed = sharded_app.failed()
    assert sorted(row["uuid"] for row in failed) == sorted(ids)
    assert {row["connection"] for row in failed} == {"sharded"}

    (sharded_app.root / "fail.flag").unlink()
    retried = sharded_app.kashq("queue:retry", "all")
    assert retried.returncode == 0, retried.stderr
    code, output = sharded_app.work("--stop-when-empty", "--quiet")

    assert code == 0, output
    assert sharded_app.ledger() == dict.fromkeys(ids, 1)
    assert sharded_app.failed() == []


# --------------------------------------------------------------------------- Redis Cluster

QUEUES = ("default", "emails", "reports")  # hash tags in different slots of the cluster


def test_workers_on_a_redis_cluster_run_jobs_of_queues_on_several_masters(
    cluster_app: App, redis_cluster: RedisClusterNodes
) -> None:
    ids = cluster_app.dispatch(
        "[j.Record(n=i).on_queue(q) for i in range(60) for q in " + repr(list(QUEUES)) + "]"
    )

    code, output = cluster_app.work(
        "--queue", ",".join(QUEUES), "--workers", "2", "--stop-when-empty", "--quiet"
    )

    assert code == 0, output
    assert cluster_app.ledger() == dict.fromkeys(ids, 1)
    client = redis.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
    slots = {client.keyslot(f"{{{queue}}}") for queue in QUEUES}
    owners = {client.get_node_from_key(f"{{{queue}}}").port for queue in QUEUES}
    client.close()
    assert len(slots) == 3 and len(owners) >= 2, "the queues must span several masters"


@pytest.mark.slow
def test_no_job_is_lost_when_a_cluster_master_restarts_under_the_workers(
    cluster_app: App, redis_cluster: RedisClusterNodes
) -> None:
    cluster_app.env.update(KASHQ_RETRY_AFTER="4", KASHQ_TIMEOUT="2")  # a lost ack: back in 4 s
    ids = cluster_app.dispatch(
        "[j.Record(n=i, pause=0.005).on_queue(q) for i in range(150) for q in "
        + repr(list(QUEUES))
        + "]"
    )
    worker = cluster_app.start_work("--queue", ",".join(QUEUES), "--workers", "2", "--quiet")
    try:
        cluster_app.wait_for_ledger(60)
        client = redis.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
        port = client.get_node_from_key("{emails}").port
        client.close()
        node = next(n for n in redis_cluster.nodes if n.port == port)
        assert sum(cluster_app.ledger().values()) < len(ids), "restarted mid-run"
        node.restart()  # SIGKILL, then start again: append-only with fsync, nothing lost
        redis_cluster.wait_ok()

        cluster_app.wait_for_ledger(len(ids), timeout_s=90)
        deadline = time.monotonic() + 10
        while set(cluster_app.ledger()) != set(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.kill()

    ran = cluster_app.ledger()
    assert set(ran) == set(ids), "every job ran"
    assert sum(ran.values()) - len(ids) <= 8, "only jobs caught mid-ack may run twice"


def test_sharded_workers_start_and_consume_with_a_shard_down_then_take_its_jobs_back(
    tmp_path: Path,
) -> None:
    servers = [RedisServer(tmp_path, appendonly=True).start() for _ in range(3)]
    try:
        with make_app(tmp_path, "sqlite") as app:
            app.env.update(
                KASHQ_CONNECTION="sharded",
                KASHQ_SHARDS=",".join(s.url for s in servers),
                KASHQ_SHARD_STRATEGY="round_robin",
            )
            ids = app.dispatch("[j.Record(n=i) for i in range(30)]")
            servers[2].kill()
            worker = app.start_work("--workers", "2")
            try:
                worker.wait_for(f"shard 127.0.0.1:{servers[2].port}/0 is down")
                app.wait_for_ledger(20)
                time.sleep(0.5)
                assert sum(app.ledger().values()) == 20, "the down shard's jobs wait for it"
                servers[2].start()  # append-only: its 10 jobs are back
                app.wait_for_ledger(30)
                worker.signal(signal.SIGTERM)
                assert worker.popen.wait(30) == 0
            finally:
                worker.kill()
            assert app.ledger() == dict.fromkeys(ids, 1)
    finally:
        for server in servers:
            server.stop()
