"""Worker behaviour: acks, linear backoff, permanent failures, bad input, leases."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timezone
from typing import Any

import pytest

import kashq
from kashq import Job, NamedJob, Outcome, Worker, WorkerOptions
from kashq.drivers.base import QueueSizes, Reservation
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope, decode
from kashq.exceptions import FailedStoreError
from kashq.failed.base import FailedJob
from kashq.failed.memory import MemoryFailedJobStore
from kashq.testing import FakeClock

CALLS: list[tuple[str, Any]] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


class Succeeds(Job):
    n: int

    def handle(self) -> None:
        CALLS.append(("handle", self.n))


class AlwaysFails(Job):
    label: str = "x"

    def handle(self) -> None:
        CALLS.append(("handle", self.attempts()))
        raise RuntimeError(f"boom {self.label}")

    def failed(self, error: BaseException) -> None:
        CALLS.append(("failed", error))


class FailsWithSlowBackoff(Job):
    tries = 3
    backoff = 2

    def handle(self) -> None:
        raise ValueError("nope")


class FailsTwiceThenSucceeds(Job):
    tries = 5

    def handle(self) -> None:
        CALLS.append(("handle", self.attempts()))
        if self.attempts() < 3:
            raise RuntimeError("not yet")


class AsyncJob(Job):
    n: int

    async def handle(self) -> None:
        await asyncio.sleep(0)
        CALLS.append(("async", self.n))


class AsyncFails(Job):
    tries = 2

    async def handle(self) -> None:
        await asyncio.sleep(0)
        raise KeyError("async boom")


class AsyncTooSlow(Job):
    tries = 1
    timeout = 0.05

    async def handle(self) -> None:
        await asyncio.sleep(5)


class Typed(Job):
    user_id: int

    def handle(self) -> None:
        CALLS.append(("typed", self.user_id))


class NoHandle(Job):
    pass


class Sleeps(Job):
    seconds: float

    def handle(self) -> None:
        CALLS.append(("start", self.seconds))
        time.sleep(self.seconds)
        CALLS.append(("end", self.seconds))


@kashq.handler("tests.worker.send_email")
def send_email(envelope: Envelope) -> None:
    CALLS.append(("named", (envelope.payload["to"], envelope.metadata)))


class FlakyStore(MemoryFailedJobStore):
    """A failed-job store that can be made unreachable, like a database that is down."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def log(self, job: FailedJob) -> FailedJob:
        if self.down:
            raise FailedStoreError("connection refused")
        return super().log(job)


class Harness:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.driver = MemoryDriver(clock=self.clock)
        self.store = FlakyStore()
        self.worker = Worker(self.driver, self.store, WorkerOptions(**options), clock=self.clock)

    def push(self, job: kashq.job.Dispatchable, queue: str = "default") -> Envelope:
        env = job.to_envelope(default_queue=queue, now=self.clock.time())
        self.driver.push(env)
        return env

    def sizes(self, queue: str = "default") -> QueueSizes:
        return self.driver.sizes([queue])[queue]

    def becomes_ready_after(self, seconds: float) -> bool:
        """Nothing is ready just before ``seconds`` from now, and something is at it."""
        self.clock.advance(seconds - 0.01)
        if self.worker.driver.sizes(["default"])["default"].ready:
            return False
        self.clock.advance(0.01)
        return self.worker.driver.sizes(["default"])["default"].ready == 1


def test_successful_job_runs_once_and_is_acknowledged():
    h = Harness()
    h.push(Succeeds(n=7))
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == [("handle", 7)]
    assert h.sizes() == QueueSizes()
    assert h.store.count() == 0


def test_failing_job_is_retried_with_linear_backoff_of_one_then_two_seconds():
    h = Harness()  # defaults: tries=3, backoff=1 s
    t0 = h.clock.time()
    h.push(AlwaysFails())

    assert h.worker.run_next() is Outcome.RETRIED
    h.clock.advance(0.99)
    assert h.worker.run_next() is None
    h.clock.advance(0.01)
    assert h.clock.time() == pytest.approx(t0 + 1)
    assert h.worker.run_next() is Outcome.RETRIED
    h.clock.advance(1.99)
    assert h.worker.run_next() is None
    h.clock.advance(0.01)
    assert h.clock.time() == pytest.approx(t0 + 1 + 2)
    assert h.worker.run_next() is Outcome.FAILED

    assert [c for c in CALLS if c[0] == "handle"] == [("handle", 1), ("handle", 2), ("handle", 3)]
    assert h.sizes() == QueueSizes()
    assert h.worker.run_next() is None


def test_job_failed_for_good_is_recorded_with_everything_needed_to_retry_it():
    h = Harness(connection="memory-test")
    env = h.push(AlwaysFails(label="abc").on_queue("mail").with_metadata(user="9"), "mail")
    worker = Worker(
        h.driver, h.store, WorkerOptions(connection="memory-test", queues=("mail",)), clock=h.clock
    )
    for _ in range(3):
        worker.run_next()
        h.clock.advance(10)

    [record] = h.store.all()
    assert record.uuid == env.id
    assert (record.connection, record.queue) == ("memory-test", "mail")
    assert record.job_type == AlwaysFails.__kashq_name__
    assert record.error == "RuntimeError: boom abc"
    assert "Traceback" in record.exception and "boom abc" in record.exception
    assert record.attempts == 3
    assert record.failed_at.tzinfo is not None
    assert record.host and record.pid > 0
    stored = decode(record.payload)
    assert stored.payload == {"label": "abc"}
    assert stored.metadata == {"user": "9"}
    assert stored.id == env.id


def test_failed_hook_runs_exactly_once_with_the_final_error():
    h = Harness(backoff=0)
    h.push(AlwaysFails())
    while h.worker.run_next() is not None:
        pass
    hooks = [c for c in CALLS if c[0] == "failed"]
    assert len(hooks) == 1
    assert isinstance(hooks[0][1], RuntimeError)


def test_job_class_tries_and_backoff_override_the_worker_defaults():
    h = Harness(tries=9, backoff=100)
    h.push(FailsWithSlowBackoff())
    assert h.worker.run_next() is Outcome.RETRIED
    assert h.becomes_ready_after(2)
    assert h.worker.run_next() is Outcome.RETRIED
    assert h.becomes_ready_after(4)
    assert h.worker.run_next() is Outcome.FAILED


def test_per_dispatch_max_retries_overrides_the_class():
    h = Harness(backoff=0)
    h.push(AlwaysFails().with_max_retries(1))
    assert h.worker.run_next() is Outcome.FAILED
    assert h.store.all()[0].attempts == 1


def test_worker_tries_option_applies_to_jobs_without_their_own():
    h = Harness(tries=2, backoff=0)
    h.push(AlwaysFails())
    outcomes = [h.worker.run_next(), h.worker.run_next()]
    assert outcomes == [Outcome.RETRIED, Outcome.FAILED]


def test_job_that_succeeds_on_a_later_attempt_is_completed():
    h = Harness(backoff=0)
    h.push(FailsTwiceThenSucceeds())
    outcomes = [h.worker.run_next() for _ in range(3)]
    assert outcomes == [Outcome.RETRIED, Outcome.RETRIED, Outcome.COMPLETED]
    assert h.store.count() == 0


def test_async_handlers_run_to_completion():
    h = Harness()
    h.push(AsyncJob(n=1))
    h.push(AsyncJob(n=2))
    assert [h.worker.run_next(), h.worker.run_next()] == [Outcome.COMPLETED] * 2
    assert CALLS == [("async", 1), ("async", 2)]


def test_async_handler_failures_follow_the_retry_rules():
    h = Harness(backoff=0)
    h.push(AsyncFails())
    assert [h.worker.run_next(), h.worker.run_next()] == [Outcome.RETRIED, Outcome.FAILED]
    assert h.store.all()[0].error == "KeyError: 'async boom'"


def test_async_handler_running_past_its_timeout_is_stopped_and_failed():
    h = Harness()
    h.push(AsyncTooSlow())
    started = time.monotonic()
    assert h.worker.run_next() is Outcome.FAILED
    assert time.monotonic() - started < 4
    assert "exceeded its timeout of 0.05s" in h.store.all()[0].error


def test_unknown_job_type_is_failed_with_a_clear_reason_and_the_worker_goes_on():
    h = Harness()
    env = h.push(Succeeds(n=1))
    h.driver.push(dataclasses.replace(env, id="unknown-1", type="nowhere.Missing"))
    h.push(Succeeds(n=2))
    outcomes = [h.worker.run_next() for _ in range(3)]
    assert outcomes == [Outcome.COMPLETED, Outcome.FAILED, Outcome.COMPLETED]
    [record] = h.store.all()
    assert record.uuid == "unknown-1"
    assert "unknown job type 'nowhere.Missing'" in record.error
    assert "KASHQ_IMPORTS" in record.error


@pytest.mark.parametrize("type_name", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_type_names_of_dangerous_callables_are_refused(type_name):
    h = Harness()
    env = h.push(Succeeds(n=1))
    h.driver.ack(h.driver.reserve(["default"], lease_s=30))  # type: ignore[arg-type]
    h.driver.push(dataclasses.replace(env, type=type_name, payload={"command": "touch /tmp/x"}))
    assert h.worker.run_next() is Outcome.FAILED
    assert "unknown job type" in h.store.all()[0].error


def test_undecodable_data_is_failed_with_a_readable_reason_and_the_worker_goes_on():
    h = Harness()
    garbage = Reservation(id="raw-1", queue="default", raw="{not json", deliveries=1, token="t")
    assert h.worker.process(garbage) is Outcome.FAILED
    h.push(Succeeds(n=3))
    assert h.worker.run_next() is Outcome.COMPLETED
    [record] = h.store.all()
    assert record.uuid == "raw-1"
    assert record.job_type == "(undecodable)"
    assert record.payload == "{not json"
    assert "not valid JSON" in record.error


def test_payload_failing_validation_is_failed_naming_the_field():
    h = Harness()
    env = h.push(Typed(user_id=1))
    h.driver.ack(h.driver.reserve(["default"], lease_s=30))  # type: ignore[arg-type]
    h.driver.push(dataclasses.replace(env, payload={"user_id": "not a number"}))
    assert h.worker.run_next() is Outcome.FAILED
    error = h.store.all()[0].error
    assert error.startswith("payload does not match Typed: user_id:")
    assert "integer" in error


def test_job_class_without_handle_is_failed_with_a_clear_reason():
    h = Harness()  # such a class cannot be built, but its name can be dispatched
    h.push(NamedJob(NoHandle.__kashq_name__, {}))
    assert h.worker.run_next() is Outcome.FAILED
    assert "defines no handle()" in h.store.all()[0].error


def test_named_jobs_are_passed_to_their_handler_function():
    h = Harness()
    h.push(NamedJob("tests.worker.send_email", {"to": "a@example.com"}).with_metadata(k="v"))
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == [("named", ("a@example.com", {"k": "v"}))]


def test_job_whose_workers_keep_dying_is_failed_as_worker_lost():
    h = Harness()
    env = h.push(AlwaysFails().with_max_retries(2))
    # Two deliveries whose workers vanish: reserved, never acked, lease lapses.
    for _ in range(2):
        assert h.driver.reserve(["default"], lease_s=30) is not None
        h.clock.advance(31)
    assert h.worker.run_next() is Outcome.FAILED
    assert not [c for c in CALLS if c[0] == "handle"], "a lost job is not run again"
    [record] = h.store.all()
    assert record.uuid == env.id
    assert record.error.startswith("worker lost: delivered 3 times")
    assert record.attempts == 2
    assert [c[0] for c in CALLS] == ["failed"]


def test_job_whose_worker_died_once_still_runs_when_deliveries_remain():
    h = Harness()
    h.push(Succeeds(n=5))
    assert h.driver.reserve(["default"], lease_s=30) is not None
    h.clock.advance(31)
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == [("handle", 5)]


def test_failure_is_parked_while_the_store_is_down_and_recorded_once_it_is_back():
    h = Harness(park_s=5, backoff=0, tries=1)
    env = h.push(AlwaysFails())
    h.store.down = True
    assert h.worker.run_next() is Outcome.PARKED
    assert h.sizes() == QueueSizes(delayed=1), "the job stays with the driver"
    h.clock.advance(5)
    assert h.worker.run_next() is Outcome.PARKED, "still down: parked again"
    h.store.down = False
    h.clock.advance(5)
    assert h.worker.run_next() is Outcome.FAILED
    assert h.sizes() == QueueSizes()
    [record] = h.store.all()
    assert record.uuid == env.id and record.error == "RuntimeError: boom x"
    assert "Traceback" in record.exception
    assert [c[0] for c in CALLS] == ["handle", "failed"], "not re-run, hook called once"


def test_failed_store_logging_is_idempotent_by_job_id():
    store = MemoryFailedJobStore()
    record = FailedJob(
        uuid="u-1",
        connection="memory",
        queue="default",
        job_type="t",
        payload="{}",
        error="e",
        exception="e",
        attempts=1,
        failed_at=datetime.now(timezone.utc),
    )
    first = store.log(record)
    assert store.log(record).id == first.id
    assert store.count() == 1


def test_queues_are_consumed_in_the_given_priority_order():
    h = Harness(queues=("high", "default"))
    h.push(Succeeds(n=1), "default")
    h.push(Succeeds(n=2), "high")
    h.worker.run_next()
    h.worker.run_next()
    assert CALLS == [("handle", 2), ("handle", 1)]


def test_drain_runs_retries_to_the_end_without_real_waiting():
    h = Harness()
    h.push(AlwaysFails())
    h.push(Succeeds(n=1))
    started = time.monotonic()
    h.worker.drain()
    assert time.monotonic() - started < 2, "backoff waits are on the fake clock"
    assert h.worker.stats.completed == 1 and h.worker.stats.failed == 1
    assert h.worker.stats.retried == 2
    assert h.sizes() == QueueSizes()


def test_threaded_workers_process_every_job_exactly_once():
    driver, store = MemoryDriver(), MemoryFailedJobStore()
    worker = Worker(driver, store, WorkerOptions(sleep_s=0.05))
    for i in range(300):
        driver.push(Succeeds(n=i).to_envelope(default_queue="default", now=time.time()))
    worker.start(4)
    deadline = time.monotonic() + 30
    while len(CALLS) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert sorted(n for _, n in CALLS) == list(range(300))
    assert not worker.running


def test_worker_stops_by_itself_after_max_jobs():
    driver, store = MemoryDriver(), MemoryFailedJobStore()
    for i in range(10):
        driver.push(Succeeds(n=i).to_envelope(default_queue="default", now=time.time()))
    worker = Worker(driver, store, WorkerOptions(max_jobs=4, sleep_s=0.05)).start(1)
    worker.join(10)
    assert not worker.running
    assert len(CALLS) == 4
    assert driver.sizes(["default"])["default"].ready == 6


def test_worker_stops_by_itself_after_max_time():
    worker = Worker(MemoryDriver(), MemoryFailedJobStore(), WorkerOptions(max_time_s=0.2))
    worker.start(2)
    worker.join(10)
    assert not worker.running


def test_stop_when_empty_ends_the_worker_once_the_queue_is_drained():
    driver = MemoryDriver()
    for i in range(20):
        driver.push(Succeeds(n=i).to_envelope(default_queue="default", now=time.time()))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(stop_when_empty=True))
    worker.start(2)
    worker.join(10)
    assert not worker.running
    assert len(CALLS) == 20


def test_stop_lets_the_running_job_finish():
    driver = MemoryDriver()
    driver.push(Sleeps(seconds=0.3).to_envelope(default_queue="default", now=time.time()))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(sleep_s=0.05)).start(1)
    while not CALLS:
        time.sleep(0.01)
    worker.stop()
    assert CALLS == [("start", 0.3), ("end", 0.3)]
    assert driver.sizes(["default"])["default"] == QueueSizes()


def test_heartbeat_renews_the_lease_of_a_long_job_so_no_one_else_gets_it():
    driver = MemoryDriver()
    driver.push(Sleeps(seconds=1.0).to_envelope(default_queue="default", now=time.time()))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(lease_s=0.3, sleep_s=0.05))
    worker.start(1)
    try:
        while not CALLS:
            time.sleep(0.01)
        stolen = []
        for _ in range(8):  # several lease lengths while the job runs
            time.sleep(0.1)
            res = driver.reserve(["default"], lease_s=0.3)
            if res is not None:
                stolen.append(res)
    finally:
        worker.stop()
    assert stolen == []
    assert CALLS == [("start", 1.0), ("end", 1.0)]


def test_start_refuses_a_concurrency_below_one():
    worker = Worker(MemoryDriver(), MemoryFailedJobStore())
    with pytest.raises(ValueError, match="concurrency"):
        worker.start(0)


def test_start_workers_consumes_the_current_managers_memory_queue():
    kashq.configure(connection="memory")
    for i in range(5):
        Succeeds(n=i).dispatch()
    worker = kashq.start_workers(2, sleep_s=0.05)
    deadline = time.monotonic() + 10
    while len(CALLS) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert sorted(n for _, n in CALLS) == [0, 1, 2, 3, 4]


def test_threads_share_no_event_loop_state_between_async_jobs():
    driver = MemoryDriver()
    for i in range(40):
        driver.push(AsyncJob(n=i).to_envelope(default_queue="default", now=time.time()))
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(stop_when_empty=True))
    worker.start(3)
    worker.join(20)
    assert sorted(n for _, n in CALLS) == list(range(40))
