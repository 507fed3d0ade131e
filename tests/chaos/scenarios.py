"""Scenarios the chaos suite runs on more than one connection, and the jobs they use.

Each scenario drives real ``queue:work`` processes through :class:`Chaos` and
returns the ledger's :class:`Summary` once the queue settled; the test file of
each connection sets up the queue and asserts what is particular to it.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from kashq.drivers.base import Driver
from kashq.failed.base import FailedJobStore
from tests.chaos.chaos_jobs import KILL_POINTS, FailsForGood, Work
from tests.chaos.harness import PREFETCH, Chaos, Summary


def mixed_jobs(
    rng: random.Random, count: int, *, ms_range: tuple[float, float] = (2, 12), kill_every: int = 0
) -> list[Work]:
    """Jobs of ``ms_range`` milliseconds, one in three instant (so workers prefetch them in
    batches); one in 50 fails for good; every ``kill_every``-th kills its worker (at each
    kill point in turn)."""
    jobs: list[Work] = []
    for n in range(count):
        ms = rng.uniform(*ms_range) if n % 3 else 0.0  # instant jobs come in batches
        kill_at = KILL_POINTS[(n // kill_every) % 3] if kill_every and n % kill_every == 0 else ""
        if n % 50 == 25:
            jobs.append(FailsForGood(ms=ms))
        else:
            jobs.append(Work(ms=ms, kill_at=kill_at))
    return jobs


def progress(chaos: Chaos, jobs: int, timeout_s: float = 60) -> None:
    """Wait until ``jobs`` more jobs have completed."""
    target = chaos.completed() + jobs
    chaos.wait_for(f"{jobs} more completed jobs", lambda: chaos.completed() >= target, timeout_s)


def worker_kills(
    chaos: Chaos,
    driver: Driver,
    store: FailedJobStore,
    rng: random.Random,
    *,
    jobs: int,
    kills: int,
    timeout_s: float,
) -> Summary:
    """``jobs`` mixed jobs, one in 100 killing its worker at a kill point, through three
    workers; the test SIGKILLs a random worker besides, up to ``kills`` times, until 90%
    have completed."""
    chaos.dispatch(driver, mixed_jobs(rng, jobs, ms_range=(10, 40), kill_every=100))
    workers = chaos.start_work("--workers", "3")
    try:
        external = 0
        while chaos.completed() < jobs * 0.9 and external < kills:
            time.sleep(rng.uniform(0.5, 1.5))
            if workers.kill_one(rng, min_age_s=2.5) is not None:
                chaos.worker_killed("SIGKILL at a random moment")
                external += 1
        chaos.wait_settled(driver, store, timeout_s=timeout_s)
    finally:
        workers.stop()
    summary = chaos.check(driver, store)
    assert {f"self-kill at {point}" for point in KILL_POINTS} <= set(summary.faults)
    assert summary.failed == jobs // 50  # the FailsForGood jobs, and only them
    return summary


def full_restarts(
    chaos: Chaos,
    driver: Driver,
    store: FailedJobStore,
    rng: random.Random,
    *,
    jobs: int,
    max_delay_s: float,
    between: int,
) -> Summary:
    """``jobs`` jobs, delayed by up to ``max_delay_s``, failing their first one or two
    attempts (1 s backoff), or plain; after ``between`` completions every process is
    SIGKILLed at once, after ``between`` more stopped with SIGTERM, each time replaced
    by a fresh ``queue:work``. Every retried job failed before it completed."""
    dispatched: list[Work] = []
    for n in range(jobs):
        job = Work(ms=rng.uniform(5, 15))
        if n % 3 == 1:
            job.delay(rng.uniform(0.5, max_delay_s))
        elif n % 3 == 2:
            job = Work(ms=rng.uniform(5, 15), fail_first=1 + n % 2).with_backoff(1)
        dispatched.append(job)
    ids = chaos.dispatch(driver, dispatched)

    workers = chaos.start_work("--workers", "2")
    try:
        progress(chaos, between)  # mid-run, whatever the start-up takes on a busy machine
        with chaos.fault("every process SIGKILLed", 2 * PREFETCH):
            workers.kill_group()  # a machine crash
            workers = chaos.start_work("--workers", "2")
        progress(chaos, between)
        with chaos.fault("every process stopped (SIGTERM)", 0):
            assert workers.stop() == 0
            workers = chaos.start_work("--workers", "2")
        chaos.wait_settled(driver, store)
    finally:
        workers.stop()

    summary = chaos.check(driver, store)
    starts = Counter(line.job_id for line in chaos.ledger.lines() if line.kind == "start")
    retried = [job_id for n, job_id in enumerate(ids) if n % 3 == 2]
    assert all(starts[job_id] >= 2 for job_id in retried)  # each failed before it completed
    assert summary.failed == 0
    return summary
