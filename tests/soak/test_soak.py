"""The soak: six minutes of a steady mix of jobs through ``queue:work --workers 4``.

Every second 100 jobs are dispatched: 85 fast (0 to 2 ms), 5 slow (100 to 400 ms),
5 that fail for good, 5 that fail once and then complete; every minute one job
runs past its timeout (its worker process is killed and replaced). The test
samples each worker process's resident memory and Redis's, then asserts:

- no leak: after its warm-up, no worker process grows by more than
  :data:`RSS_GROWTH_MB`;
- no orphaned keys: once the queue has drained, Redis holds none of the per-job
  state (jobs, leases, claims, ready/delayed/reserved sets), the event stream is
  within its bound, the failed jobs' kept outcomes have expired (a short
  ``KASHQ_RESULT_TTL``), and Redis uses no more memory than it did at the end of
  the warm-up;
- the chaos invariant (:mod:`tests.chaos.harness`): every job completed or in
  failed_jobs, exactly once in failed_jobs, none lost.

``KASHQ_TEST_SOAK_SECONDS`` shortens it for a local try (the default is 360: a minute
of warm-up, then five steady minutes).
"""

from __future__ import annotations

import os
import random
import time
from collections import defaultdict
from pathlib import Path

import pytest
import redis

from kashq.drivers.redis import RedisDriver
from kashq.drivers.redis.keys import queue_keys, stream_key
from kashq.failed.database import DatabaseFailedJobStore
from tests.chaos.chaos_jobs import FailsForGood, Work
from tests.chaos.harness import PREFETCH, Chaos, Fault
from tests.support import report
from tests.support.services import RedisServer
from tests.support.waiting import eventually

pytestmark = [pytest.mark.soak, pytest.mark.timeout(1500)]

SOAK_S = float(os.environ.get("KASHQ_TEST_SOAK_SECONDS", "360"))
RATE = 100  # jobs dispatched per second
WARM_UP_S = min(60.0, SOAK_S / 4)  # of the run, and of each worker process
RSS_GROWTH_MB = 20.0
EVENTS_MAX_LEN = 1000
RESULT_TTL_S = 5  # the outcomes of failed jobs, kept this long: gone by the end
SAMPLE_EVERY_S = 5.0
_PAGE = os.sysconf("SC_PAGE_SIZE")


def one_second_of_jobs(rng: random.Random) -> list[Work]:
    jobs: list[Work] = []
    for n in range(RATE):
        if n < 85:
            jobs.append(Work(ms=rng.uniform(0, 2)))
        elif n < 90:
            jobs.append(Work(ms=rng.uniform(100, 400)))
        elif n < 95:
            jobs.append(FailsForGood(ms=1))
        else:
            jobs.append(Work(ms=1, fail_first=1))
    rng.shuffle(jobs)
    return jobs


def rss_mb(pid: int) -> float | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE / 2**20
    except OSError:
        return None


def test_soak_of_mixed_jobs_leaks_nothing(tmp_path):
    server = RedisServer(tmp_path).start()
    chaos = Chaos.create(
        "soak",
        tmp_path,
        {"KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": server.url,
         "KASHQ_EVENTS_MAX_LEN": str(EVENTS_MAX_LEN), "KASHQ_RESULT_TTL": str(RESULT_TTL_S)},
    )  # fmt: skip
    driver = RedisDriver(server.url)
    store = DatabaseFailedJobStore(chaos.env["KASHQ_DATABASE_URL"])
    admin = redis.Redis(port=server.port)
    rng = random.Random(10)
    samples: dict[int, list[tuple[float, float]]] = defaultdict(list)  # pid -> (t, MB)
    warm_redis_mb = 0.0
    timed_out = 0

    workers = chaos.start_work("--workers", "4", "--memory", "2048")
    try:
        began = next_sample = time.monotonic()
        second = 0
        while (now := time.monotonic()) - began < SOAK_S:
            jobs = one_second_of_jobs(rng)
            if second % 60 == 30:  # runs past its 1 s timeout: its process is killed
                jobs.append(Work(ms=5000).with_timeout(1).with_max_retries(1))
                chaos.faults.append(
                    Fault("job timed out", time.time() + 1, time.time() + 1, PREFETCH, True)
                )
                timed_out += 1
            chaos.dispatch(driver, jobs)
            if now >= next_sample:
                next_sample += SAMPLE_EVERY_S
                for pid in workers.children():
                    if (mb := rss_mb(pid)) is not None:
                        samples[pid].append((now - began, mb))
            if not warm_redis_mb and now - began >= WARM_UP_S:
                warm_redis_mb = admin.info("memory")["used_memory"] / 2**20
            second += 1
            time.sleep(max(began + second - time.monotonic(), 0))
        chaos.wait_settled(driver, store, timeout_s=180)
        summary = chaos.check(driver, store)
    finally:
        workers.stop()

    growth = {}
    for pid, seen in samples.items():
        warm = [mb for t, mb in seen if t >= max(WARM_UP_S, seen[0][0] + WARM_UP_S)]
        if len(warm) >= 2:
            growth[pid] = max(warm) - warm[0]
    keys = queue_keys("kashq", "default")
    left = {
        name: admin.exists(key)
        for name, key in (
            ("jobs", keys.jobs), ("state", keys.state), ("ready", keys.ready),
            ("delayed", keys.delayed), ("reserved", keys.reserved), ("claims", keys.claims),
        )
    }  # fmt: skip
    events = admin.xlen(stream_key("kashq"))
    # The failed jobs' outcomes are kept RESULT_TTL_S: once it has passed, Redis has
    # deleted them itself (its expiry cycle), and they take no memory.
    results_gone = eventually(lambda: not any(admin.scan_iter("kashq:result:*")), 60)
    drained_redis_mb = admin.info("memory")["used_memory"] / 2**20
    report.add(
        f"soak: {SOAK_S:g} s at {RATE} jobs/s, {timed_out} timeouts; worker RSS growth after "
        f"warm-up (MB): {sorted(round(g, 1) for g in growth.values())}; peak worker RSS "
        f"{max(mb for seen in samples.values() for _, mb in seen):.1f} MB; Redis used_memory "
        f"{warm_redis_mb:.2f} MB after warm-up, {drained_redis_mb:.2f} MB drained; "
        f"{events} events in the stream; keys left: {sorted(admin.keys())}"
    )
    assert summary.failed == len(store.all())
    assert growth, "no worker process lived through its warm-up"
    assert max(growth.values()) <= RSS_GROWTH_MB, growth
    assert not any(left.values()), left  # per-job state all gone
    assert results_gone, "results outlived their time-to-live"
    assert events <= EVENTS_MAX_LEN * 2  # approximate trimming keeps it near the bound
    assert drained_redis_mb <= warm_redis_mb + 1.0
    driver.close()
    server.stop()
