"""The event recorder lists the ends of jobs in the store of recent jobs (memory, no I/O)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import pytest

from kashq import Job, JobCancelled, QueueManager, Worker, WorkerOptions
from kashq.config import load_settings
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope
from kashq.events.memory import MemoryEventStore, NullEventStore
from kashq.events.recorder import EventRecorder
from kashq.failed.memory import MemoryFailedJobStore
from kashq.jobevents import EventKind, JobEvent
from kashq.recent import writer
from kashq.recent.base import RecentJob, RecentStoreError
from kashq.recent.memory import MemoryRecentStore
from kashq.testing import FakeClock


class Sends(Job):
    n: int = 0

    def handle(self) -> int:
        return self.n


class GivesUp(Job):
    def handle(self) -> None:
        raise JobCancelled("the order was withdrawn")


def newest_first(envs: Sequence[Envelope]) -> list[Envelope]:
    """Envelopes in the order their records list (all finished at one fake time: by id)."""
    return sorted(envs, key=lambda env: env.id, reverse=True)


@pytest.mark.parametrize("events", [True, False], ids=["events-on", "events-off"])
def test_a_draining_worker_lists_what_completed_was_cancelled_and_expired(events):
    clock = FakeClock(start=1_000_000.0)
    driver = MemoryDriver(clock=clock)
    recent = MemoryRecentStore(clock, keep_s=3600, keep_max=100)
    log = MemoryEventStore() if events else NullEventStore()
    recorder = EventRecorder(log, recent=recent, clock=clock, flush_interval_s=60)
    worker = Worker(
        driver, MemoryFailedJobStore(), WorkerOptions(backoff=0), clock=clock,
        listeners=[recorder.listener],
    )  # fmt: skip

    def push(job: Job, **fields: object) -> Envelope:
        env = job.to_envelope(default_queue="default", now=clock.time())
        env = dataclasses.replace(env, **fields)  # type: ignore[arg-type]
        driver.push(env)
        return env

    sent = [push(Sends(n=n), tags=("user:42",) if n == 0 else ()) for n in range(3)]
    gave_up, stale = push(GivesUp()), push(Sends().with_expiry(5))
    clock.advance(10)
    worker.drain()
    withdrawn = push(Sends(n=9), queue="later")
    assert driver.remove(withdrawn.id) is not None
    recorder.cancelled([withdrawn])  # as kashq.cancel does for a waiting job
    assert recorder.flush()
    now = clock.time()

    completed, cursor = recent.page("default", "completed")
    assert cursor is None
    assert [(j.job_id, j.job_type, j.attempts, j.tags, j.error) for j in completed] == [
        (env.id, env.type, 1, env.tags, "") for env in newest_first(sent)
    ]
    assert all(j.finished_at == now and j.duration_s is not None for j in completed)
    (cancelled,), _ = recent.page("default", "cancelled")
    assert (cancelled.job_id, cancelled.error, cancelled.attempts) == (
        gave_up.id,
        "the order was withdrawn",
        1,
    )
    (expired,), _ = recent.page("default", "expired")
    assert expired.job_id == stale.id and "expired" in expired.error
    why = "cancelled before it started"
    assert recent.page("later", "cancelled")[0] == [
        RecentJob(withdrawn.id, "later", "cancelled", withdrawn.type, now, 0, error=why)
    ]
    assert recent.queues() == ["default", "later"]
    assert bool(log.get_job_events(sent[0].id)) is events
    recorder.close()


def test_a_store_that_keeps_nothing_gets_nothing_and_no_thread_starts():
    clock = FakeClock()
    recorder = EventRecorder(NullEventStore(), recent=MemoryRecentStore(clock, keep_s=0))
    env = Sends().to_envelope(default_queue="default", now=clock.time())
    recorder.listener(
        JobEvent(EventKind.COMPLETED, None, env, env.type, env.queue, 1, clock.time())
    )
    recorder.cancelled([env])
    assert recorder._thread is None, "nothing to write: no background writer"
    recorder.close()


class Flaky(MemoryRecentStore):
    """A memory store that is unreachable while ``down``."""

    down = True

    def add(self, jobs: Sequence[RecentJob]) -> None:
        if self.down:
            raise RecentStoreError("listing recent jobs failed on redis://nowhere: refused")
        super().add(jobs)


def test_a_store_that_is_down_is_logged_once_and_its_records_dropped_after_a_few_tries(caplog):
    clock = FakeClock()
    store = Flaky(clock)
    recorder = EventRecorder(NullEventStore(), recent=store, clock=clock, flush_interval_s=60)
    envs = [Sends(n=n).to_envelope(default_queue="default", now=clock.time()) for n in range(5)]
    with caplog.at_level(logging.WARNING, logger=writer.__name__):
        for env in envs:
            ended = JobEvent(EventKind.COMPLETED, None, env, env.type, env.queue, 1, clock.time())
            recorder.listener(ended)  # returns at once, the store down or not
        for _ in range(writer.TRIES):
            assert not recorder.flush()
        assert recorder.recent_dropped == len(envs)
        assert store.count("default", "completed") == 0
        store.down = False
        late = envs[0]
        expired = JobEvent(EventKind.EXPIRED, None, late, late.type, late.queue, 0, clock.time())
        recorder.listener(expired)
        assert recorder.flush()
    assert [r.message.split(";")[0] for r in caplog.records] == [
        "recent jobs' store unreachable (listing recent jobs failed on redis://nowhere: refused)",
        "recent jobs' store reachable again",
    ]
    assert store.count("default", "expired") == 1
    recorder.close()


@pytest.mark.parametrize("events", [True, False], ids=["events-on", "events-off"])
def test_the_manager_lists_what_its_workers_ran_with_events_on_or_off(events):
    manager = QueueManager(load_settings(connection="memory", events=events, keep_completed=3600))
    store = manager.recent()
    job_id = manager.dispatch(Sends(n=1))
    manager.worker(stop_when_empty=True, sleep_s=0.01).run(1)
    manager.close()  # writes what its recorders hold
    (job,), _ = store.page("default", "completed")
    assert (job.job_id, job.job_type, job.attempts) == (job_id, Sends().type_name, 1)
