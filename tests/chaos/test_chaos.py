"""Chaos scenarios: real ``queue:work`` processes and real servers, faults injected mid-run.

Each scenario ends with the invariant of :mod:`tests.chaos.harness` and prints
its ledger summary. Run them with ``KASHQ_TEST_CHAOS=1 ./scripts/test tests/chaos -s``
(CI runs them always).
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import make_url

from kashq.db import migrate
from kashq.drivers.redis import RedisDriver
from kashq.drivers.sharded import ShardedDriver
from kashq.failed.database import DatabaseFailedJobStore
from tests.chaos.chaos_jobs import FailsForGood, Work
from tests.chaos.harness import LEASE_S, PREFETCH, Chaos
from tests.chaos.scenarios import full_restarts, mixed_jobs, progress, worker_kills
from tests.support.databases import postgres_database
from tests.support.proxy import TcpProxy
from tests.support.services import POSTGRES_URL, RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF on (every write fsynced), for faults to hit."""
    server = RedisServer(tmp_path, appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


def on_redis(name: str, tmp_path: Path, server: RedisServer) -> tuple[Chaos, RedisDriver]:
    chaos = Chaos.create(
        name, tmp_path, {"KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": server.url}
    )
    return chaos, RedisDriver(server.url)


def test_workers_sigkilled_at_random_moments_and_at_each_kill_point(tmp_path, redis_server):
    """2,000 jobs; 20 of them SIGKILL their worker (between reserve and handle, during
    handle, between handle and ack) and the test SIGKILLs a random worker besides.

    Jobs take 0 or 10 to 40 ms: the instant ones are prefetched in batches, so a kill
    catches completed jobs whose acknowledgements were still to ride on the next
    reserve, and prefetched jobs not started: the replacement acknowledges the first
    and gives the others back from the slot, so at most the running job runs twice.
    """
    chaos, driver = on_redis("worker-kills", tmp_path, redis_server)
    store = DatabaseFailedJobStore(chaos.env["KASHQ_DATABASE_URL"])

    summary = worker_kills(
        chaos, driver, store, random.Random(1), jobs=2000, kills=10, timeout_s=180
    )

    assert sum(n for label, n in summary.faults.items() if "kill" in label.lower()) >= 20
    driver.close()


def test_redis_killed_and_restarted_with_aof_and_connections_cut(tmp_path, redis_server):
    """Redis is SIGKILLed and restarted (AOF, fsync always) three times, and every client
    connection is cut (CLIENT KILL TYPE normal) three times after each restart, while
    two workers drain 2,000 jobs; 500 of them are dispatched between the faults."""
    chaos, driver = on_redis("redis-restarts", tmp_path, redis_server)
    store = DatabaseFailedJobStore(chaos.env["KASHQ_DATABASE_URL"])
    rng = random.Random(2)
    chaos.dispatch(driver, mixed_jobs(rng, 1500, ms_range=(2, 8)))
    admin = redis.Redis(port=redis_server.port)
    in_flight = 2 * PREFETCH  # every worker may lose its whole batch

    workers = chaos.start_work("--workers", "2")
    try:
        for _ in range(3):
            progress(chaos, 150)
            with chaos.fault("Redis SIGKILLed and restarted", in_flight):
                redis_server.restart()
            for _ in range(3):
                progress(chaos, 50)
                with chaos.fault("CLIENT KILL TYPE normal", in_flight):
                    admin.client_kill_filter(_type="normal", skipme=True)
            chaos.dispatch(driver, mixed_jobs(rng, 166, ms_range=(2, 8)))
        chaos.wait_settled(driver, store)
    finally:
        workers.stop()

    summary = chaos.check(driver, store)
    assert summary.faults["Redis SIGKILLed and restarted"] == 3
    assert summary.faults["CLIENT KILL TYPE normal"] == 9
    driver.close()


def test_failed_job_database_unreachable_while_jobs_fail_for_good(tmp_path, redis_server):
    """failed_jobs lives in PostgreSQL, reached through a proxy the test cuts for 7 s (past
    the 5 s a parked failure waits) while a third of 600 jobs fail for good."""
    with postgres_database() as pg_url:
        migrate.upgrade(pg_url)
        pg = make_url(POSTGRES_URL)
        proxy = TcpProxy(pg.host or "127.0.0.1", pg.port or 5432).start()
        failed_url = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
        chaos = Chaos.create(
            "failed-store-down",
            tmp_path,
            {"KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": redis_server.url,
             "KASHQ_DATABASE_URL": failed_url},
        )  # fmt: skip
        driver = RedisDriver(redis_server.url)
        store = DatabaseFailedJobStore(pg_url)  # the test reads it directly
        rng = random.Random(3)
        jobs = [
            FailsForGood(ms=rng.uniform(2, 10)) if n % 3 == 0 else Work(ms=rng.uniform(2, 10))
            for n in range(600)
        ]
        chaos.dispatch(driver, jobs)
        workers = chaos.start_work("--workers", "2")
        try:
            chaos.wait_for("40 recorded failures", lambda: store.count() >= 40, 60)
            with chaos.fault("failed_jobs database unreachable for 7 s", 0):
                proxy.stop()
                recorded = store.count()
                time.sleep(7)
                assert store.count() == recorded  # nothing reached it meanwhile
                parked = driver.sizes(["default"])["default"].delayed
                proxy.start()
            chaos.wait_for("every failure recorded", lambda: store.count() == 200, 60)
            chaos.faults[-1].recovery_s = time.time() - chaos.faults[-1].ended
            chaos.wait_settled(driver, store)
        finally:
            workers.stop()
            proxy.stop()
        summary = chaos.check(driver, store)
        assert summary.failed == 200
        assert parked > 0  # failures waited in the queue while the database was away
        store.close()
        driver.close()


def test_redis_paused_longer_than_a_lease_runs_jobs_twice_never_zero_times(tmp_path, redis_server):
    """The Redis server is SIGSTOPped for twice the lease, three times, mid-drain."""
    chaos, driver = on_redis("redis-paused", tmp_path, redis_server)
    store = DatabaseFailedJobStore(chaos.env["KASHQ_DATABASE_URL"])
    rng = random.Random(4)
    chaos.dispatch(driver, mixed_jobs(rng, 1500, ms_range=(5, 20)))
    assert redis_server.process is not None

    workers = chaos.start_work("--workers", "2")
    try:
        for _ in range(3):
            progress(chaos, 200)
            with chaos.fault(f"Redis paused for {2 * LEASE_S:g} s", 2 * PREFETCH):
                redis_server.process.send_signal(signal.SIGSTOP)
                time.sleep(2 * LEASE_S)
                redis_server.process.send_signal(signal.SIGCONT)
        chaos.wait_settled(driver, store)
    finally:
        workers.stop()

    summary = chaos.check(driver, store)
    assert summary.faults[f"Redis paused for {2 * LEASE_S:g} s"] == 3
    driver.close()


def test_delayed_and_retried_jobs_survive_a_full_restart_of_every_worker(tmp_path, redis_server):
    """600 jobs: delayed by up to 6 s, failing their first one or two attempts (1 s
    backoff), or plain; every process is SIGKILLed at once, then later stopped with
    SIGTERM, each time replaced by a fresh queue:work."""
    chaos, driver = on_redis("full-restarts", tmp_path, redis_server)
    store = DatabaseFailedJobStore(chaos.env["KASHQ_DATABASE_URL"])

    full_restarts(chaos, driver, store, random.Random(5), jobs=600, max_delay_s=6, between=60)
    driver.close()


def test_sharded_one_shard_killed_healthy_shards_keep_flowing(tmp_path):
    """Three shards (AOF on); 500 jobs on each. One shard's server is SIGKILLed for 5 s:
    jobs on the other two keep completing, and the dead shard's jobs resume after."""
    servers = [RedisServer(tmp_path, appendonly=True).start() for _ in range(3)]
    urls = [server.url for server in servers]
    chaos = Chaos.create(
        "shard-down",
        tmp_path,
        {"KASHQ_CONNECTION": "sharded", "KASHQ_SHARDS": ",".join(urls),
         "KASHQ_SHARD_STRATEGY": "hash"},
    )  # fmt: skip
    sharded = ShardedDriver(urls)
    store = DatabaseFailedJobStore(chaos.env["KASHQ_DATABASE_URL"])
    rng = random.Random(6)
    on_shard: list[set[str]] = []
    for url in urls:  # each job placed on a known shard
        shard = RedisDriver(url)
        on_shard.append(set(chaos.dispatch(shard, mixed_jobs(rng, 500, ms_range=(5, 15)))))
        shard.close()

    workers = chaos.start_work("--workers", "2")
    try:
        progress(chaos, 200)
        with chaos.fault("shard SIGKILLed for 5 s", 2 * PREFETCH):
            servers[1].kill()
            outage_began = time.time()
            time.sleep(5)
            outage_ended = time.time()
            servers[1].start()
        chaos.wait_settled(sharded, store)
        chaos.check(sharded, store)
    finally:
        workers.stop()
        sharded.close()
        for server in servers:
            server.stop()

    during = {
        line.job_id
        for line in chaos.ledger.lines()
        if line.kind == "done" and outage_began + LEASE_S < line.at < outage_ended
    }
    assert len(during) > 50  # the healthy shards kept flowing
    assert not during & on_shard[1]  # nothing of the dead shard completed while it was down
