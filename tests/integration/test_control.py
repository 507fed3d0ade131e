"""Cancel, pause and expiry on every connection: memory, database (SQLite, PostgreSQL,
MariaDB), Redis, Redis Cluster and sharded, through the public API.

Each test gets a current manager on the connection under test with a fake clock
(see ``tests/integration/test_job_status.py``); a running worker reads the
halts once a second in real time, so the tests that need one wait about that.
"""

from __future__ import annotations

import threading
import time

import pytest

import kashq
from kashq import Job, JobCancelled, QueueManager
from kashq.envelope import new_job_id
from kashq.halts import HALT_PREFIX
from kashq.status import JobExpired
from kashq.testing import FakeClock
from tests.integration import test_job_status
from tests.support.waiting import eventually

# The fixture of test_job_status: a current manager on each connection kind, fake clock.
queue = test_job_status.queue

RUNS: list[str] = []
STARTED = threading.Event()


class Counted(Job):
    def handle(self) -> None:
        RUNS.append(self.envelope.id if self.envelope else "")


class Unique(Job):
    unique_for = 600
    key: str

    def handle(self) -> None:
        RUNS.append(self.key)


class Loops(Job):
    """Runs until cancelled, checking between steps."""

    def handle(self) -> None:
        STARTED.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not self.cancelled():
            time.sleep(0.02)
        RUNS.append("ran out")


class Dozes(Job):
    async def handle(self) -> None:
        import asyncio

        STARTED.set()
        await asyncio.sleep(20)
        RUNS.append("woke")


class Answers(Job):
    def handle(self) -> int:
        return 42


class Stale(Job):
    expires_in = 10

    def handle(self) -> None:
        RUNS.append("stale")


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    STARTED.clear()


def _run(manager: QueueManager, *queues: str) -> None:
    manager.worker(queues=queues or ("default",), stop_when_empty=True, sleep_s=0.05).run(1)


def _clock(manager: QueueManager) -> FakeClock:
    assert isinstance(manager.clock, FakeClock)
    return manager.clock


def test_waiting_jobs_are_cancelled_never_run_and_free_their_unique_claim(queue):
    ready, later = Counted().dispatch(), Counted().dispatch_after(60)
    unique = Unique(key="a").dispatch()
    assert unique is not None and Unique(key="a").dispatch() is None
    answers = [kashq.cancel(job_id) for job_id in (ready, later, unique)]
    assert [(a.outcome, a.state) for a in answers] == [
        ("cancelled", "queued"),
        ("cancelled", "delayed"),
        ("cancelled", "queued"),
    ]
    assert Unique(key="a").dispatch() is not None, "the cancelled job's unique claim is freed"
    _clock(queue).advance(61)
    _run(queue)
    assert RUNS == ["a"], "only the unique job dispatched again ran"
    for job_id in (ready, later):
        status = kashq.get_job(job_id).status()
        assert (status.state, status.error) == ("cancelled", "cancelled before it started")
        with pytest.raises(JobCancelled):
            kashq.get_job(job_id).result(timeout=5)
    assert queue.failed_store().count() == 0
    recorder = queue.recorder()
    assert recorder is not None and recorder.flush()
    events = kashq.get_job(ready)._lookup()._events().get_job_events(ready)
    assert [e.type for e in events][-1] == "cancelled"


def test_a_job_held_by_a_worker_that_died_ends_cancelled_when_delivered_again(queue):
    handle = Counted().dispatch()
    held = queue.connection().reserve(["default"], lease_s=5)  # its worker is SIGKILLed
    assert held is not None and held.id == handle
    answer = kashq.cancel(handle)
    assert (answer.outcome, answer.state) == ("aborting", "reserved")
    assert queue.connection().get_control(HALT_PREFIX), "a durable marker waits for the job"
    _clock(queue).advance(6)  # the lease lapses: the next worker receives it
    _run(queue)
    assert RUNS == [] and kashq.get_job(handle).status().state == "cancelled"
    assert queue.connection().get_control(HALT_PREFIX) == {}, "the marker is gone with the job"


def test_running_jobs_stop_at_a_check_or_an_await_and_end_cancelled(queue):
    worker = queue.worker(sleep_s=0.05).start(2)
    try:
        looping = Loops().dispatch()
        assert STARTED.wait(10)
        STARTED.clear()
        dozing = Dozes().dispatch()
        assert STARTED.wait(10)
        for handle in (looping, dozing):
            assert kashq.cancel(handle).outcome == "aborting"
        for handle in (looping, dozing):  # read within about a second
            status = handle.wait(timeout=10)
            assert (status.state, status.error) == ("cancelled", "cancelled while running")
    finally:
        worker.stop(10)
    assert RUNS == [] and queue.failed_store().count() == 0


def test_a_paused_queue_is_left_alone_by_a_running_worker_until_continued(queue):
    worker = queue.worker(queues=("default", "other"), sleep_s=0.05).start(1)
    try:
        kashq.pause_queue("default")
        assert "default" in kashq.paused_queues()
        # The worker reads the pause within about a second; a reserve already waiting
        # (up to sleep_s) ends first.
        assert eventually(lambda: "default" in worker._controls.halts.paused, 5)
        time.sleep(0.2)
        waiting, other = Counted().dispatch(), Counted().on_queue("other").dispatch()
        assert other.wait(timeout=10).state == "completed", "other queues go on"
        time.sleep(0.3)  # a worker taking "default" would have run it by now
        assert waiting.status().state == "queued"
        assert kashq.resume_queue("default") and not kashq.resume_queue("default")
        assert waiting.wait(timeout=10).state == "completed"
    finally:
        worker.stop(10)
    assert kashq.paused_queues() == {}


def test_a_worker_started_on_a_paused_queue_takes_nothing_and_stops_when_empty(queue):
    kashq.pause_queue("default")
    handle = Counted().dispatch()
    _run(queue)  # --stop-when-empty: a paused queue counts as empty
    assert RUNS == [] and handle.status().state == "queued"
    kashq.resume_queue("default")
    _run(queue)
    assert handle.status().state == "completed"


def test_a_job_not_started_before_its_expiry_is_dropped_as_expired(queue):
    stale, fresh = Stale().dispatch(), Stale().with_expiry(3600).dispatch()
    _clock(queue).advance(11)
    _run(queue)
    assert RUNS == ["stale"]
    status = stale.status()
    assert status.state == "expired" and "expired" in status.error
    with pytest.raises(JobExpired):
        stale.result(timeout=5)
    assert fresh.status().state == "completed" and queue.failed_store().count() == 0


def test_cancelling_an_ended_or_unknown_job_is_a_plain_answer(queue):
    done = Answers().dispatch()
    _run(queue)
    answer = kashq.cancel(done)
    assert (answer.outcome, answer.state) == ("ended", "completed")
    assert answer.message == f"job {done} has already ended: completed"
    assert kashq.cancel(new_job_id()).outcome == "unknown"
    assert kashq.cancel("not an id\x00").outcome == "unknown"
