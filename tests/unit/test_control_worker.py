"""Cancel, pause and expiry as one worker applies them (memory driver, no I/O).

How the halts reach the worker (control records read once a second) is
exercised here by calling the controls' refresh directly; the timing across
processes and connections is in ``tests/integration/test_control.py`` and
``tests/e2e/test_cli_control.py``.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest

import kashq
from kashq import Job, JobCancelled, Outcome, Worker, WorkerOptions
from kashq.abort import AbortSignal
from kashq.drivers.base import Reservation
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import decode
from kashq.exceptions import JobDefinitionError
from kashq.failed.memory import MemoryFailedJobStore
from kashq.halts import (
    NO_HALTS,
    QUEUE_PREFIX,
    Halts,
    cancel_value,
    job_record,
    pause_value,
    queue_record,
    read_halts,
)
from kashq.jobevents import EventKind, JobEvent
from kashq.results.memory import MemoryResultStore
from kashq.testing import FakeClock
from kashq.worker.controls import Controls

RAN: list[str] = []
FAILED_HOOK: list[str] = []
EXPIRED_HOOK: list[str] = []


class Counted(Job):
    def handle(self) -> int:
        RAN.append("counted")
        return 1

    def failed(self, error: BaseException) -> None:
        FAILED_HOOK.append(str(error))


class Expiring(Job):
    expires_in = 30

    def handle(self) -> None:
        RAN.append("expiring")

    def expired(self) -> None:
        EXPIRED_HOOK.append("told")


class GivesUp(Job):
    def handle(self) -> None:
        raise JobCancelled("the order was withdrawn")


class Cooperates(Job):
    """Waits, checking for a cancel, until the test lets it go."""

    how: str = "check"

    def handle(self) -> str:
        STARTED.set()
        while not RELEASE.wait(0.01):
            if self.how == "check":
                self.cancelled()
            elif self.how == "progress":
                self.progress(0.5)
            elif self.how == "swallow":
                try:
                    self.cancelled()
                except JobCancelled:
                    return "cleaned up"
            elif self.how == "raise-other" and CANCEL_SEEN.is_set():
                raise RuntimeError("cleanup failed")
        return "finished"


class Sleeps(Job):
    async def handle(self) -> None:
        STARTED.set()
        await asyncio.sleep(30)


STARTED, RELEASE, CANCEL_SEEN = threading.Event(), threading.Event(), threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> None:
    for seen in (RAN, FAILED_HOOK, EXPIRED_HOOK):
        seen.clear()
    for event in (STARTED, RELEASE, CANCEL_SEEN):
        event.clear()


class Box:
    def __init__(self) -> None:
        self.clock = FakeClock(start=1_000_000.0)
        self.driver = MemoryDriver(clock=self.clock)
        self.failed = MemoryFailedJobStore()
        self.results = MemoryResultStore(self.clock)
        self.events: list[JobEvent] = []
        self.worker = self.make_worker()

    def make_worker(self, **options: object) -> Worker:
        worker = Worker(
            self.driver, self.failed, WorkerOptions(**options),  # type: ignore[arg-type]
            clock=self.clock, results=self.results, listeners=[self.events.append],
        )  # fmt: skip
        return worker

    def push(self, job: kashq.job.Dispatchable) -> str:
        env = job.to_envelope(default_queue="default", now=self.clock.time())
        self.driver.push(env)
        return env.id

    def mark_cancelled(self, job_id: str) -> None:
        self.driver.put_control(job_record(job_id), cancel_value(job_id, "default", 0.0))

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


@pytest.fixture
def box() -> Box:
    return Box()


def test_halts_are_read_from_their_records_and_anything_else_is_skipped():
    records = {
        queue_record("emails"): pause_value("emails", 5.0),
        job_record("j1"): cancel_value("j1", "emails", 6.0),
        "halt:job:bad": "not json",
        "halt:queue:odd": "[1, 2]",
        "supervisor:x": "{}",
    }
    assert read_halts(records) == Halts(frozenset({"emails"}), frozenset({"j1"}))
    assert read_halts({}) is NO_HALTS
    long_name = "q" * 200
    assert len(queue_record(long_name)) <= 191 and queue_record(long_name).startswith(QUEUE_PREFIX)
    assert read_halts({queue_record(long_name): pause_value(long_name, 1.0)}).paused == {long_name}


def test_a_job_marked_cancelled_is_settled_cancelled_without_running(box):
    job_id = box.push(Counted())
    box.mark_cancelled(job_id)
    assert box.worker.run_next() is Outcome.CANCELLED
    assert RAN == [] and FAILED_HOOK == [] and box.failed.count() == 0
    assert box.driver.find(job_id) is None
    kept = box.results.get(job_id)
    assert kept is not None
    assert (kept.status, kept.error) == ("cancelled", "cancelled before it started")
    assert box.driver.get_control("halt:") == {}, "the marker is deleted once the job is settled"
    assert EventKind.CANCELLED in box.kinds() and EventKind.STARTED not in box.kinds()
    assert box.worker.stats.cancelled == 1 and box.worker.stats.processed == 1


def test_a_job_that_raises_job_cancelled_ends_cancelled_without_retry_or_failed_hook(box):
    job_id = box.push(GivesUp())
    assert box.worker.run_next() is Outcome.CANCELLED
    kept = box.results.get(job_id)
    assert kept is not None
    assert (kept.status, kept.error) == ("cancelled", "the order was withdrawn")
    assert box.driver.sizes(["default"])["default"].total == 0 and box.failed.count() == 0


def test_an_expired_job_is_dropped_unrun_and_its_hook_told(box):
    stale = box.push(Expiring())
    fresh = box.push(Counted().with_expiry(timedelta(minutes=5)))
    at_time = box.push(Counted().with_expiry(datetime.fromtimestamp(1_000_010.0, timezone.utc)))
    box.clock.advance(31)
    assert [box.worker.run_next() for _ in range(3)] == [
        Outcome.EXPIRED,
        Outcome.COMPLETED,
        Outcome.EXPIRED,
    ]
    assert RAN == ["counted"] and EXPIRED_HOOK == ["told"]
    for job_id in (stale, at_time):
        kept = box.results.get(job_id)
        assert kept is not None and kept.status == "expired" and "expired" in kept.error
    assert box.results.get(fresh).status == "completed"
    assert box.worker.stats.expired == 2


def test_expiry_is_on_the_envelope_and_bad_values_are_refused(box):
    env = Counted().with_expiry(90).to_envelope(default_queue="default", now=100.0)
    assert env.expires_at == 190.0 and decode(env.encode()).expires_at == 190.0
    assert Counted().to_envelope(default_queue="default", now=100.0).expires_at is None
    assert '"expires_at"' not in Counted().to_envelope(default_queue="d", now=1.0).encode()
    with pytest.raises(ValueError, match="expiry"):
        Counted().with_expiry(-1)
    with pytest.raises(JobDefinitionError, match="expires_in"):

        class Bad(Job):
            expires_in = -5

            def handle(self) -> None: ...


def test_a_paused_queue_is_skipped_and_taken_again_once_resumed(box):
    box.worker = box.make_worker(queues=("high", "default"))
    low = box.push(Counted())
    high = box.push(Counted().on_queue("high"))
    box.driver.put_control(queue_record("high"), pause_value("high", 0.0))
    assert box.worker.run_next() is Outcome.COMPLETED
    assert box.driver.find(high) is not None and box.driver.find(low) is None
    box.driver.put_control(queue_record("default"), pause_value("default", 0.0))
    box.clock.advance(2)
    box.worker.drain()  # every queue paused: drains nothing, and returns
    assert box.driver.find(high) is not None
    box.driver.delete_control(queue_record("high"))
    box.worker.drain()
    assert box.driver.find(high) is None


def _run_in_thread(worker: Worker, res: Reservation | None) -> list[Outcome]:
    assert res is not None
    outcomes: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(worker.process(res)))
    thread.start()
    assert STARTED.wait(5)
    return outcomes


@pytest.mark.parametrize("how", ["check", "progress", "swallow"])
def test_a_running_job_meets_its_cancel_at_its_next_check(box, how):
    job_id = box.push(Cooperates(how=how))
    res = box.driver.reserve(["default"], lease_s=30)
    outcomes = _run_in_thread(box.worker, res)
    box.mark_cancelled(job_id)
    box.worker._controls.refresh()  # what the controls thread does every second
    for _ in range(500):
        if outcomes:
            break
        threading.Event().wait(0.01)
    assert outcomes == [Outcome.CANCELLED]
    kept = box.results.get(job_id)
    assert kept is not None
    assert (kept.status, kept.error) == ("cancelled", "cancelled while running")
    assert EventKind.ABORTING in box.kinds() and box.driver.get_control("halt:") == {}


def test_an_async_job_is_cancelled_at_its_next_await(box):
    job_id = box.push(Sleeps())
    outcomes = _run_in_thread(box.worker, box.driver.reserve(["default"], lease_s=30))
    box.mark_cancelled(job_id)
    box.worker._controls.refresh()
    for _ in range(500):
        if outcomes:
            break
        threading.Event().wait(0.01)
    assert outcomes == [Outcome.CANCELLED]
    ran = next(e for e in box.events if e.kind is EventKind.RAN)
    assert ran.error == "the job was cancelled", "the task's CancelledError is the job's cancel"


def test_a_job_that_fails_after_its_cancel_is_cancelled_not_retried(box):
    job_id = box.push(Cooperates(how="raise-other"))
    outcomes = _run_in_thread(box.worker, box.driver.reserve(["default"], lease_s=30))
    box.mark_cancelled(job_id)
    box.worker._controls.refresh()
    CANCEL_SEEN.set()
    for _ in range(500):
        if outcomes:
            break
        threading.Event().wait(0.01)
    assert outcomes == [Outcome.CANCELLED] and FAILED_HOOK == [] and box.failed.count() == 0


def test_a_cancel_that_comes_too_late_lets_the_job_complete_and_drops_its_marker(box):
    job_id = box.push(Cooperates(how="never"))
    outcomes = _run_in_thread(box.worker, box.driver.reserve(["default"], lease_s=30))
    box.mark_cancelled(job_id)
    box.worker._controls.refresh()
    RELEASE.set()  # it never checks: it finishes its work
    for _ in range(500):
        if outcomes:
            break
        threading.Event().wait(0.01)
    assert outcomes == [Outcome.COMPLETED]
    assert box.driver.get_control("halt:") == {}


def test_an_attempt_killed_after_its_grace_ends_cancelled_in_its_successor(box):
    job_id = box.push(Counted())
    res = box.driver.reserve(["default"], lease_s=30)
    assert res is not None
    box.mark_cancelled(job_id)
    successor = box.make_worker()
    assert successor.abandon(res, kashq.JobTimeout(1.0, killed=True)) is Outcome.CANCELLED
    kept = box.results.get(job_id)
    assert kept is not None and kept.status == "cancelled" and "grace" in kept.error
    assert box.failed.count() == 0 and RAN == []


def test_the_controls_stop_only_attempts_that_started(box):
    # A job taken but not started meets its marker before it starts (see the test above
    # of a marked job); raising its signal then would tell the listeners of an abort
    # before the job runs, when a queue:work slot cannot act on it yet.
    job_id = box.push(Counted())
    res = box.driver.reserve(["default"], lease_s=30)
    assert res is not None
    signal = AbortSignal()
    aborted: list[str] = []
    controls = Controls(box.driver, lambda: [(res, signal)])
    controls.on_abort = lambda attempt: aborted.append(attempt.envelope.id)
    box.mark_cancelled(job_id)
    controls.refresh()
    assert (signal.requested, aborted) == (False, [])
    signal.started = True
    controls.refresh()
    assert (signal.requested, aborted) == (True, [job_id])
    controls.refresh()
    assert aborted == [job_id], "told once"


def test_a_signal_cancels_an_attached_task_even_when_asked_first():
    signal = AbortSignal()
    assert signal.request() and not signal.request()

    async def main() -> None:
        task = asyncio.ensure_future(asyncio.sleep(5))
        signal.attach(task, asyncio.get_running_loop())  # type: ignore[arg-type]
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    with pytest.raises(JobCancelled):
        signal.check()
    assert signal.raised


def test_cancelled_outside_a_worker_is_false():
    assert Counted().cancelled() is False
