"""A job by id on every connection: its status through every state, its typed result,
its failure, its progress (from this process and from a worker in another), and expiry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import kashq
from kashq import FailJob, Job, QueueManager
from kashq.dlq import push_back
from kashq.drivers.base import Driver
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver
from kashq.drivers.sharded import ShardedDriver
from kashq.envelope import new_job_id
from kashq.status import JobFailed, JobNotFound, ResultTimeout, get_job
from kashq.testing import FakeClock
from tests.support.managers import KINDS, current_manager, failed_store_url
from tests.support.services import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
GATE = threading.Event()


class Box(BaseModel):
    area: int
    measured_at: datetime


@dataclasses.dataclass
class Pair:
    left: int
    right: str


class Measure(Job):
    side: int

    def handle(self) -> Box:
        return Box(area=self.side**2, measured_at=datetime(2030, 1, 2, tzinfo=timezone.utc))


class MakePair(Job):
    def handle(self) -> Pair:
        return Pair(1, "one")


class Nothing(Job):
    def handle(self) -> None:
        pass


class FailsOnce(Job):
    tries = 2
    backoff = 60

    def handle(self) -> None:
        if self.attempts() == 1:
            raise RuntimeError("first try fails")


class Refuses(Job):
    def handle(self) -> None:
        raise FailJob("the account is closed")


class ShortLived(Job):
    result_ttl = 3

    def handle(self) -> int:
        return 42


class KeepsNone(Job):
    result_ttl = 0

    def handle(self) -> int:
        return 7


class Slow(Job):
    def handle(self) -> str:
        self.progress(0.5, "half way")
        GATE.wait(30)
        return "done"


@pytest.fixture(params=KINDS)
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueManager]:
    """A current manager whose default connection is the kind under test, on a fake clock."""
    clock = FakeClock(start=time.time())
    GATE.clear()
    try:
        with current_manager(request, request.param, tmp_path, clock) as made:
            yield made
    finally:
        GATE.set()


def _run(manager: QueueManager) -> None:
    manager.worker(stop_when_empty=True, sleep_s=0.05).run(1)


def _clock(manager: QueueManager) -> FakeClock:
    assert isinstance(manager.clock, FakeClock)
    return manager.clock


def test_a_job_is_followed_from_queued_to_completed_with_its_typed_result(queue):
    handle = Measure(side=3).dispatch()
    assert isinstance(handle, str) and handle == handle.id
    status = handle.status()
    assert (status.state, status.job_type, status.attempts) == ("queued", Measure.__kashq_name__, 0)
    assert status.connection == queue.settings.connection and status.queue == "default"
    pair = MakePair().dispatch()
    _run(queue)
    assert handle.status().state == "completed"
    expected = Box(area=9, measured_at=datetime(2030, 1, 2, tzinfo=timezone.utc))
    assert handle.result(timeout=10) == expected
    assert get_job(handle.id).result(timeout=10) == expected  # a handle made from the id alone
    assert pair.result(timeout=10) == Pair(1, "one")


def test_a_delayed_job_and_one_whose_worker_vanished_come_back_queued(queue):
    clock = _clock(queue)
    later = Nothing().dispatch_after(60)
    assert later.status().state == "delayed"
    clock.advance(61)
    assert later.status().state == "queued"
    driver = queue.connection()
    held = driver.reserve(["default"], lease_s=5)  # a worker takes it, then is SIGKILLed
    assert held is not None and held.id == later.id
    assert later.status().state == "reserved"
    clock.advance(6)
    assert later.status().state == "queued"  # its lease lapsed: the next worker takes it
    _run(queue)
    assert later.status().state == "completed"
    assert later.result(timeout=10) is None
    assert queue.results().get(later.id) is None, "a job returning None stores nothing"


def test_a_job_waiting_for_its_retry_is_delayed_with_the_error_of_its_attempt(queue):
    handle = FailsOnce().dispatch()
    assert queue.worker().run_next() is kashq.Outcome.RETRIED
    deadline = time.monotonic() + 10
    status = handle.status()
    while not status.error and time.monotonic() < deadline:  # events are written in batches
        time.sleep(0.02)
        status = handle.status()
    assert (status.state, status.attempts, status.error) == (
        "delayed",
        1,
        "RuntimeError: first try fails",
    )
    assert status.available_at == _clock(queue).time() + 60


def test_a_failed_job_says_why_and_its_result_raises(queue):
    handle = Refuses().dispatch()
    _run(queue)
    status = get_job(handle.id).status()
    assert (status.state, status.reason, status.error) == (
        "failed",
        "fail_job",
        "the account is closed",
    )
    with pytest.raises(JobFailed, match=r"fail_job.*the account is closed") as caught:
        handle.result(timeout=10)
    assert caught.value.reason == "fail_job"


def test_a_failed_job_retried_by_hand_is_queued_again_not_failed(queue):
    handle = Refuses().dispatch()
    _run(queue)
    assert handle.status().state == "failed"
    _clock(queue).advance(1)
    [record] = queue.failed_store().all()
    push_back(queue, queue.failed_store(), record)
    assert handle.status().state == "queued", "the earlier run's outcome is not this run's"
    with pytest.raises(ResultTimeout):
        handle.wait(timeout=0.3)
    _run(queue)
    assert handle.status().state == "failed"


def test_results_expire_after_their_time_to_live_and_a_ttl_of_zero_keeps_none(queue):
    short, none_kept = ShortLived().dispatch(), KeepsNone().dispatch()
    _run(queue)
    assert short.result(timeout=10) == 42
    assert queue.results().get(none_kept.id) is None
    _clock(queue).advance(4)
    if isinstance(queue.connection(), (RedisDriver, ShardedDriver)):
        time.sleep(3.1)  # Redis expires keys on its own clock
    assert queue.results().get(short.id) is None
    recorder = queue.recorder()
    assert recorder is not None and recorder.flush()
    assert get_job(short.id).status().state == "completed"  # the event log still knows


def test_progress_of_a_running_job_is_seen_by_id(queue):
    handle = Slow().dispatch()
    worker = queue.worker(sleep_s=0.05).start()
    try:
        deadline = time.monotonic() + 20
        status = handle.status()
        while status.progress is None and time.monotonic() < deadline:
            time.sleep(0.02)
            status = handle.status()
        assert (status.state, status.progress, status.message) == ("running", 0.5, "half way")
        GATE.set()
        assert handle.result(timeout=20) == "done"
    finally:
        GATE.set()
        worker.stop(10)


def test_a_wait_ends_at_its_timeout_and_an_unknown_id_is_not_found(queue):
    handle = Nothing().dispatch()
    with pytest.raises(ResultTimeout, match=r"has not ended after 0\.2s"):
        handle.wait(timeout=0.2)
    assert handle.status().state == "queued"
    with pytest.raises(JobNotFound, match="never dispatched there"):
        get_job(new_job_id()).status()


# -- a worker in another process ------------------------------------------------------

WORKER = """
import sys, time
import kashq

class Reporter(kashq.Job):
    def handle(self) -> int:
        self.progress(0.25, "a quarter")
        deadline = time.monotonic() + 30
        while not __import__("os").path.exists(sys.argv[1]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return 4

kashq.register("tests.status.Reporter", Reporter)
kashq.manager().worker(stop_when_empty=True, sleep_s=0.05).run(1)
"""


def _environment(driver: Driver, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASHQ_")}
    env["PYTHONPATH"] = str(ROOT)
    env["KASHQ_DATABASE_URL"] = failed_store_url(driver, tmp_path)
    if isinstance(driver, DatabaseDriver):
        env["KASHQ_CONNECTION"] = "database"
    elif isinstance(driver, ShardedDriver):
        env.update(
            KASHQ_CONNECTION="sharded",
            KASHQ_SHARDS=",".join(request.getfixturevalue("redis_shards")),
            KASHQ_PREFIX=driver.prefix,
            KASHQ_SHARD_STRATEGY=driver.strategy,
        )
    else:
        assert isinstance(driver, RedisDriver)
        cluster = request.node.callspec.params["queue"] == "redis-cluster"
        url = request.getfixturevalue("redis_cluster_url") if cluster else None
        env.update(KASHQ_CONNECTION="redis", KASHQ_PREFIX=driver.prefix)
        env["KASHQ_REDIS_URL"] = url or REDIS_URL
    return env


@pytest.mark.parametrize("queue", [k for k in KINDS if k != "memory"], indirect=True)
def test_progress_reported_in_another_process_is_seen_here(queue, request, tmp_path):
    script, gate = tmp_path / "worker.py", tmp_path / "go"
    script.write_text(WORKER)
    env = _environment(queue.connection(), request, tmp_path)
    handle = kashq.NamedJob("tests.status.Reporter").dispatch()
    assert handle is not None
    worker = subprocess.Popen([sys.executable, str(script), str(gate)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        status = handle.status()
        while status.progress is None and time.monotonic() < deadline:
            time.sleep(0.05)
            status = handle.status()
        assert (status.progress, status.message) == (0.25, "a quarter")
        gate.touch()
        assert worker.wait(30) == 0
        assert json.loads(json.dumps(handle.result(timeout=10))) == 4
    finally:
        gate.touch()
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_dispatch_still_returns_an_id_that_works_as_a_string(queue):
    handle = Nothing().dispatch()
    assert handle is not None
    text: Any = json.dumps({"id": handle})
    assert json.loads(text)["id"] == handle.id
    assert repr(handle) == f"JobHandle({handle.id!r})"
    assert kashq.manager().dispatch_many([Nothing()])[0] is not None
