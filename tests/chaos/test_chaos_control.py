"""Chaos with an operator at the controls: cancels and pauses while workers die and Redis
restarts (see :mod:`tests.chaos.harness` for the invariant every scenario keeps).

Besides it, here: a job whose cancel answered ``cancelled`` (taken off its queue)
never completes; every job ends exactly one way (completed, failed or cancelled);
and while the queue is paused no job starts once the workers had time to see it.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kashq import QueueManager
from kashq.config import load_settings
from kashq.drivers.redis import RedisDriver
from kashq.exceptions import DriverError
from kashq.failed.database import DatabaseFailedJobStore
from tests.chaos.chaos_jobs import Work
from tests.chaos.harness import PREFETCH, Chaos
from tests.chaos.scenarios import mixed_jobs
from tests.support import report
from tests.support.services import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

SEEN_S = 2.5
"""How long after a pause a job may still start: the workers read it within a second; a
reserve already waiting (1 s) ends first, and a worker runs the short jobs it holds."""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


def test_cancels_and_pauses_hold_while_workers_are_killed_and_redis_restarts(
    tmp_path, redis_server
):
    """1,200 jobs (one in ten runs a second, checking for a cancel); three workers. Every
    second the test cancels 40 jobs at random (waiting, running or done) and up to three
    running long ones; it pauses the queue twice for 4 s, SIGKILLs a random worker every
    other second and restarts Redis once."""
    settings = {"KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": redis_server.url}
    chaos = Chaos.create("cancel-and-pause", tmp_path, settings)
    driver = RedisDriver(redis_server.url)
    store = DatabaseFailedJobStore(chaos.env["KASHQ_DATABASE_URL"])
    manager = QueueManager(
        load_settings(
            connection="redis", redis_url=redis_server.url,
            database_url=chaos.env["KASHQ_DATABASE_URL"],
        )
    )  # fmt: skip
    rng = random.Random(7)
    jobs = mixed_jobs(rng, 1200, ms_range=(5, 25))
    for n in range(0, len(jobs), 10):
        jobs[n] = Work(ms=1000)
    ids = chaos.dispatch(driver, jobs)
    long_jobs = set(ids[::10])
    answers: dict[str, tuple[str, float]] = {}  # job id -> (outcome, when it was answered)
    paused: list[tuple[float, float]] = []

    workers = chaos.start_work("--workers", "3")
    try:
        for second in range(12):
            running = _running(chaos, long_jobs)
            for job_id in [*rng.sample(ids, 40), *rng.sample(running, min(3, len(running)))]:
                if job_id not in answers:
                    with contextlib.suppress(DriverError):  # Redis is restarting
                        answers[job_id] = (manager.cancel(job_id).outcome, time.time())
            if second in (2, 8):
                manager.pause("default")
                began = time.time()
                time.sleep(4)
                manager.resume("default")
                paused.append((began, time.time()))
            if second == 5:
                with chaos.fault("Redis SIGKILLed and restarted", 3 * PREFETCH):
                    redis_server.restart()
            if second % 2 and workers.kill_one(rng, min_age_s=1.0) is not None:
                chaos.worker_killed("worker SIGKILLed")
            time.sleep(1)
        chaos.wait_settled(driver, store, cancelled=lambda: _cancelled(manager, answers))
    finally:
        workers.stop()

    cancelled = _cancelled(manager, answers)
    summary = chaos.check(driver, store, cancelled=frozenset(cancelled))
    lines = chaos.ledger.lines()
    removed = {job_id: at for job_id, (outcome, at) in answers.items() if outcome == "cancelled"}
    ran_after = [line.job_id for line in lines if line.kind == "done" and line.job_id in removed]
    assert not ran_after, f"jobs cancelled off their queue that completed: {ran_after[:5]}"
    assert removed.keys() <= cancelled
    aborted = {job_id for job_id, (outcome, _) in answers.items() if outcome == "aborting"}
    assert aborted & cancelled, "no running job was stopped"
    for began, ended in paused:
        started = [ln for ln in lines if ln.kind == "start" and began + SEEN_S < ln.at < ended]
        assert not started, f"{len(started)} jobs started while the queue was paused"
    report.add(f"chaos[{summary.scenario}]: cancels {len(answers)}: {_counts(answers)}")
    manager.close()
    driver.close()
    store.close()


def _running(chaos: Chaos, among: set[str]) -> list[str]:
    """Jobs of ``among`` that started and have not completed (by the ledger)."""
    lines = chaos.ledger.lines()
    done = {line.job_id for line in lines if line.kind == "done"}
    return sorted({ln.job_id for ln in lines if ln.kind == "start" and ln.job_id in among} - done)


def _cancelled(manager: QueueManager, answers: dict[str, tuple[str, float]]) -> set[str]:
    """The answered jobs whose stored outcome is ``cancelled``."""
    results = manager.results()
    found = set()
    for job_id, (outcome, _) in answers.items():
        if outcome in ("cancelled", "aborting"):
            try:
                record = results.get(job_id)
            except DriverError:
                continue
            if record is not None and record.status == "cancelled":
                found.add(job_id)
    return found


def _counts(answers: dict[str, tuple[str, float]]) -> str:
    counts: dict[str, int] = {}
    for outcome, _ in answers.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
