"""What a worker tells its listeners, and abandon(): an attempt that ended outside process()."""

from __future__ import annotations

from kashq import EventKind, Job, JobEvent, JobTimeout, Outcome, Worker, WorkerOptions
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import decode
from kashq.failed.memory import MemoryFailedJobStore
from kashq.testing import FakeClock

HOOKED: list[str] = []


class Fine(Job):
    def handle(self) -> None:
        pass


class Breaks(Job):
    tries = 2
    backoff = 3

    def handle(self) -> None:
        raise ValueError("broken")

    def failed(self, error: BaseException) -> None:
        HOOKED.append(str(error))


class Events:
    """A worker on a memory driver, recording every event it emits."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.driver = MemoryDriver(clock=self.clock)
        self.store = MemoryFailedJobStore()
        self.seen: list[JobEvent] = []
        self.worker = Worker(
            self.driver, self.store, WorkerOptions(timeout_s=9), clock=self.clock,
            listeners=[self.seen.append],
        )  # fmt: skip

    def push(self, job: Job) -> str:
        env = job.to_envelope(default_queue="default", now=self.clock.time())
        self.driver.push(env)
        return env.id

    def kinds(self) -> list[EventKind]:
        return [event.kind for event in self.seen]


def test_completed_job_emits_started_then_completed_with_its_duration() -> None:
    e = Events()
    job_id = e.push(Fine())

    e.worker.run_next()

    started, ran, completed = e.seen
    assert e.kinds() == [EventKind.STARTED, EventKind.RAN, EventKind.COMPLETED]
    assert ran.duration_s is not None
    assert started.job_id == completed.job_id == job_id
    assert started.job_type == "tests.unit.test_worker_events.Fine"
    assert started.queue == "default"
    assert started.attempt == completed.attempt == 1
    assert started.timeout_s == 9
    assert completed.duration_s is not None and completed.duration_s >= 0
    assert started.reservation is not None and started.reservation.id == job_id


def test_failing_attempts_emit_retried_with_the_delay_then_failed() -> None:
    e = Events()
    e.push(Breaks())

    e.worker.run_next()
    e.clock.advance(3)
    e.worker.run_next()

    assert e.kinds() == [
        EventKind.STARTED,
        EventKind.RAN,
        EventKind.RETRIED,
        EventKind.STARTED,
        EventKind.RAN,
        EventKind.FAILED,
    ]
    retried, failed = e.seen[2], e.seen[5]
    assert retried.delay_s == 3
    assert retried.error == "ValueError: broken"
    assert failed.attempt == 2
    assert failed.error == "ValueError: broken"


def test_undecodable_job_emits_failed_without_an_envelope() -> None:
    e = Events()
    job_id = e.push(Fine())
    res = e.driver.reserve(["default"], lease_s=30)
    assert res is not None and res.id == job_id
    garbled = type(res)(res.id, res.queue, "{not json", res.deliveries, res.token)

    assert e.worker.process(garbled) is Outcome.FAILED

    (event,) = e.seen
    assert event.kind is EventKind.FAILED
    assert event.envelope is None
    assert event.job_id == job_id


def test_a_listener_that_raises_does_not_stop_the_worker() -> None:
    e = Events()

    def broken(event: JobEvent) -> None:
        raise RuntimeError("listener bug")

    e.worker.add_listener(broken)
    e.push(Fine())

    assert e.worker.run_next() is Outcome.COMPLETED
    assert e.kinds() == [EventKind.STARTED, EventKind.RAN, EventKind.COMPLETED]


def test_abandon_counts_the_attempt_as_failed_and_retries_after_the_backoff() -> None:
    e = Events()
    job_id = e.push(Breaks())
    res = e.driver.reserve(["default"], lease_s=30)
    assert res is not None

    outcome = e.worker.abandon(res, JobTimeout(1, killed=True))

    assert outcome is Outcome.RETRIED
    assert e.driver.sizes(["default"])["default"].delayed == 1
    e.clock.advance(3)
    again = e.driver.reserve(["default"], lease_s=30)
    assert again is not None and again.id == job_id
    assert decode(again.raw).attempts == 1


def test_abandon_on_the_last_try_fails_for_good_and_calls_the_failed_hook() -> None:
    HOOKED.clear()
    e = Events()
    e.push(Breaks().with_max_retries(1))
    res = e.driver.reserve(["default"], lease_s=30)
    assert res is not None

    outcome = e.worker.abandon(res, JobTimeout(1, killed=True))

    assert outcome is Outcome.FAILED
    (record,) = e.store.all()
    assert record.error == "job exceeded its timeout of 1s; its worker process was killed"
    assert record.attempts == 1
    assert [record.error] == HOOKED
    assert e.driver.sizes(["default"])["default"].total == 0


class Exits(Job):
    tries = 1

    def handle(self) -> None:
        raise SystemExit(3)


def test_a_job_calling_sys_exit_fails_its_attempt_and_the_worker_goes_on() -> None:
    e = Events()
    e.push(Exits())
    e.push(Fine())

    assert e.worker.run_next() is Outcome.FAILED
    assert e.worker.run_next() is Outcome.COMPLETED
    (record,) = e.store.all()
    assert record.error == "SystemExit: 3"
