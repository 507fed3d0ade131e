"""Job middleware (the pipeline, ReleaseJob, the built-in ones) and unique jobs, in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import kashq
from kashq import (
    Job,
    JobDefinitionError,
    Outcome,
    QueueManager,
    Worker,
    WorkerOptions,
    load_settings,
)
from kashq.drivers.base import Reservation
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope
from kashq.exceptions import KashqError
from kashq.failed.memory import MemoryFailedJobStore
from kashq.jobevents import EventKind, JobEvent
from kashq.locks import backend_for
from kashq.middleware import (
    Middleware,
    RateLimited,
    ReleaseJob,
    ThrottlesExceptions,
    WithoutOverlapping,
    current,
)
from kashq.testing import FakeClock, MemoryQueue, memory_queue

CALLS: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


class Record:
    """Records entering and leaving, to show the order layers run in."""

    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        CALLS.append(f"{self.name}:before")
        result = call_next()
        CALLS.append(f"{self.name}:after")
        return result


class Skip:
    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        CALLS.append("skipped")
        return None


class Release:
    def __init__(self, delay_s: float, *, count_attempt: bool = False) -> None:
        self.delay_s, self.count_attempt = delay_s, count_attempt

    def handle(self, job: Job, call_next: Callable[[], Any]) -> Any:
        raise ReleaseJob(self.delay_s, count_attempt=self.count_attempt)


class Layered(Job):
    def middleware(self) -> list[Middleware]:
        return [Record("outer"), Record("inner")]

    def handle(self) -> None:
        CALLS.append("handle")


class AsyncLayered(Job):
    def middleware(self) -> list[Middleware]:
        return [Record("outer")]

    async def handle(self) -> None:
        await asyncio.sleep(0)
        CALLS.append("async handle")


class Skipped(Job):
    def middleware(self) -> list[Middleware]:
        return [Skip()]

    def handle(self) -> None:
        CALLS.append("handle")


class Released(Job):
    delay_s: float = 7
    count_attempt: bool = False
    tries = 2

    def middleware(self) -> list[Middleware]:
        return [Release(self.delay_s, count_attempt=self.count_attempt)]

    def handle(self) -> None:
        CALLS.append("handle")

    def failed(self, error: BaseException) -> None:
        CALLS.append(("failed", str(error)))


class ReleasesItself(Job):
    def handle(self) -> None:
        if self.attempts() == 1 and not CALLS:
            CALLS.append("released")
            raise ReleaseJob(3)
        CALLS.append(("ran", self.attempts()))


class SeesContext(Job):
    def middleware(self) -> list[Middleware]:
        return [Record("outer")]

    def handle(self) -> None:
        context = current()
        CALLS.append((context.envelope.type, context.locks is backend_for(context.driver)))


class Overlapping(Job):
    key: str

    def middleware(self) -> list[Middleware]:
        return [WithoutOverlapping(self.key, release_after=4)]

    def handle(self) -> None:
        CALLS.append(("ran", self.key))


class Limited(Job):
    n: int

    def middleware(self) -> list[Middleware]:
        return [RateLimited("unit-api", 2, 10)]

    def handle(self) -> None:
        CALLS.append(("ran", self.n))


class Throttled(Job):
    tries = 10
    backoff = 0

    def middleware(self) -> list[Middleware]:
        return [ThrottlesExceptions(2, 60)]

    def handle(self) -> None:
        CALLS.append(("ran", self.attempts()))
        raise RuntimeError("upstream down")


class RecordingDriver(MemoryDriver):
    """The memory driver, noting every envelope a worker releases back to it."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.released: list[Envelope] = []

    def release(self, reservation: Reservation, envelope: Envelope) -> None:
        self.released.append(envelope)
        super().release(reservation, envelope)


class Harness:
    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.driver = RecordingDriver(self.clock)
        self.store = MemoryFailedJobStore()
        self.events: list[JobEvent] = []
        self.worker = Worker(
            self.driver,
            self.store,
            WorkerOptions(**options),
            clock=self.clock,
            listeners=[self.events.append],
        )

    def push(self, job: Job) -> Envelope:
        env = job.to_envelope(default_queue="default", now=self.clock.time())
        self.driver.push(env)
        return env

    def stored(self) -> Envelope:
        """The envelope last put back by the worker."""
        return self.driver.released[-1]

    def retried(self) -> list[JobEvent]:
        return [e for e in self.events if e.kind is EventKind.RETRIED]


@pytest.fixture
def q() -> Iterator[MemoryQueue]:
    with memory_queue() as queue:
        yield queue


# -- the pipeline ------------------------------------------------------------


def test_middleware_run_around_handle_first_in_the_list_outermost():
    h = Harness()
    h.push(Layered())
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == ["outer:before", "inner:before", "handle", "inner:after", "outer:after"]


def test_async_handle_runs_to_completion_inside_the_middleware():
    h = Harness()
    h.push(AsyncLayered())
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == ["outer:before", "async handle", "outer:after"]


def test_middleware_that_does_not_call_next_completes_the_job_without_handle():
    h = Harness()
    h.push(Skipped())
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == ["skipped"]


def test_current_gives_the_running_job_its_envelope_and_the_drivers_locks():
    h = Harness()
    h.push(SeesContext())
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS[1] == (SeesContext.__kashq_name__, True)


def test_current_outside_a_job_is_an_error():
    with pytest.raises(KashqError, match="no kashq job is running"):
        current()


# -- ReleaseJob ----------------------------------------------------------------


def test_released_job_goes_back_delayed_without_burning_an_attempt_or_failing():
    h = Harness()
    pushed = h.push(Released(delay_s=7))
    assert h.worker.run_next() is Outcome.RETRIED
    back = h.stored()
    assert back.attempts == 0
    assert back.available_at == pytest.approx(pushed.available_at + 7)
    assert CALLS == []  # neither handle() nor failed()
    assert h.store.all() == []
    assert [(e.attempt, e.delay_s) for e in h.retried()] == [(1, 7.0)]
    assert h.worker.run_next() is None  # not before its delay
    h.clock.advance(7)
    assert h.worker.run_next() is Outcome.RETRIED
    assert h.stored().attempts == 0


def test_released_job_counting_its_attempt_fails_for_good_once_tries_are_used():
    h = Harness()
    h.push(Released(delay_s=1, count_attempt=True))
    assert h.worker.run_next() is Outcome.RETRIED
    assert h.stored().attempts == 1
    h.clock.advance(1)
    assert h.worker.run_next() is Outcome.FAILED
    assert [f.attempts for f in h.store.all()] == [2]
    assert CALLS == [("failed", "released for 1s")]


def test_handle_may_release_its_own_job():
    h = Harness()
    h.push(ReleasesItself())
    assert h.worker.run_next() is Outcome.RETRIED
    h.clock.advance(3)
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == ["released", ("ran", 1)]


def test_release_delay_must_be_a_number_of_seconds():
    with pytest.raises(ValueError):
        ReleaseJob(-1)


# -- the built-in middleware ---------------------------------------------------


def test_without_overlapping_releases_a_job_whose_key_is_held_and_runs_it_once_free():
    h = Harness()
    locks = backend_for(h.driver)
    held = locks.try_acquire(f"overlap:{Overlapping.__kashq_name__}:a", 60)
    assert held is not None
    h.push(Overlapping(key="a"))
    assert h.worker.run_next() is Outcome.RETRIED
    assert h.stored().attempts == 0
    assert [e.delay_s for e in h.retried()] == [4.0]
    h.push(Overlapping(key="b"))  # another key is not blocked
    h.clock.advance(4)
    held.release()
    assert h.worker.run_next() is Outcome.COMPLETED
    assert h.worker.run_next() is Outcome.COMPLETED
    assert sorted(CALLS) == [("ran", "a"), ("ran", "b")]
    # The job freed its lock when it finished.
    assert locks.try_acquire(f"overlap:{Overlapping.__kashq_name__}:a", 1) is not None


def test_rate_limited_lets_max_jobs_through_per_window_and_releases_the_rest():
    h = Harness()
    h.clock.advance(-(h.clock.time() % 10) + 2)  # two seconds into a window
    for n in range(3):
        h.push(Limited(n=n))
    outcomes = [h.worker.run_next() for _ in range(3)]
    assert outcomes == [Outcome.COMPLETED, Outcome.COMPLETED, Outcome.RETRIED]
    assert [e.delay_s for e in h.retried()] == [pytest.approx(8.0)]
    assert h.worker.run_next() is None
    h.clock.advance(8)
    assert h.worker.run_next() is Outcome.COMPLETED
    assert sorted(n for _, n in CALLS) == [0, 1, 2]


def test_throttles_exceptions_stops_running_the_job_for_the_rest_of_the_window():
    h = Harness()
    h.clock.advance(-(h.clock.time() % 60))  # at the start of a window
    h.push(Throttled())
    assert h.worker.run_next() is Outcome.RETRIED  # exception 1
    assert h.worker.run_next() is Outcome.RETRIED  # exception 2: throttled from now on
    assert h.worker.run_next() is Outcome.RETRIED  # not run
    assert CALLS == [("ran", 1), ("ran", 2)]
    assert h.stored().attempts == 2  # the throttled run burnt no attempt
    assert h.retried()[-1].delay_s == pytest.approx(60.0)
    assert h.worker.run_next() is None
    h.clock.advance(60)
    assert h.worker.run_next() is Outcome.RETRIED
    assert CALLS[-1] == ("ran", 3)


def test_built_in_middleware_refuse_bad_settings():
    with pytest.raises(ValueError):
        WithoutOverlapping("k", release_after=0)
    with pytest.raises(ValueError):
        RateLimited("k", 0, 1)
    with pytest.raises(ValueError):
        ThrottlesExceptions(1, -5)


# -- unique jobs ---------------------------------------------------------------


class Report(Job):
    account_id: int
    unique_for = 60

    def handle(self) -> None:
        CALLS.append(("report", self.account_id))


class FailingReport(Job):
    account_id: int
    unique_for = 60
    tries = 2
    backoff = 5

    def handle(self) -> None:
        raise RuntimeError("no data")


class ReportUntilProcessing(Job):
    account_id: int
    unique_for = 60
    unique_until = "processing"

    def handle(self) -> None:
        CALLS.append(ReportUntilProcessing(account_id=self.account_id).dispatch())


class ReportPerAccount(Job):
    account_id: int
    label: str
    unique_for = 60

    def unique_id(self) -> str:
        return str(self.account_id)

    def handle(self) -> None:
        pass


def test_dispatching_an_equal_unique_job_while_one_is_queued_pushes_nothing(q: MemoryQueue):
    first = Report(account_id=1).dispatch()
    assert first is not None
    assert Report(account_id=1).dispatch() is None
    assert kashq.dispatch(Report(account_id=1)) is None
    assert Report(account_id=2).dispatch() is not None  # another payload is another job
    assert q.sizes()["default"].ready == 2


def test_unique_job_can_be_dispatched_again_once_it_completed(q: MemoryQueue):
    first = Report(account_id=1).dispatch()
    q.drain()
    second = Report(account_id=1).dispatch()
    assert second is not None and second != first


def test_unique_until_processing_frees_the_lock_when_the_job_starts(q: MemoryQueue):
    assert ReportUntilProcessing(account_id=1).dispatch() is not None
    assert ReportUntilProcessing(account_id=1).dispatch() is None
    q.manager.worker("memory").run_next()
    assert len(CALLS) == 1 and CALLS[0] is not None  # dispatched from inside handle()
    assert ReportUntilProcessing(account_id=1).dispatch() is None  # that one is queued now


def test_unique_lock_expires_after_unique_for(q: MemoryQueue):
    first = Report(account_id=1).dispatch()
    q.clock.advance(61)
    second = Report(account_id=1).dispatch()
    assert second is not None and second != first
    # The old job finishing does not free the new dispatch's lock (another token).
    q.manager.worker("memory").run_next()
    assert Report(account_id=1).dispatch() is None


def test_a_retry_keeps_the_unique_lock_and_failing_for_good_frees_it(q: MemoryQueue):
    assert FailingReport(account_id=1).dispatch() is not None
    worker = q.manager.worker("memory")
    assert worker.run_next() is Outcome.RETRIED
    assert FailingReport(account_id=1).dispatch() is None
    q.clock.advance(5)
    assert worker.run_next() is Outcome.FAILED
    assert FailingReport(account_id=1).dispatch() is not None


def test_unique_id_decides_which_jobs_are_equal(q: MemoryQueue):
    assert ReportPerAccount(account_id=1, label="a").dispatch() is not None
    assert ReportPerAccount(account_id=1, label="b").dispatch() is None


def test_dispatch_many_skips_unique_duplicates_with_none(q: MemoryQueue):
    Report(account_id=9).dispatch()
    ids = kashq.dispatch_many(
        [Report(account_id=1), Report(account_id=1), Report(account_id=9), Report(account_id=2)]
    )
    assert ids[0] is not None and ids[3] is not None
    assert ids[1] is None and ids[2] is None
    assert q.sizes()["default"].ready == 3


def test_unique_job_on_the_sync_connection_runs_and_frees_its_lock():
    kashq.configure(QueueManager(load_settings(connection="sync"), clock=FakeClock()))
    assert Report(account_id=1).dispatch() is not None
    assert Report(account_id=1).dispatch() is not None
    assert CALLS == [("report", 1), ("report", 1)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_for": 0}, "unique_for"),
        ({"unique_for": "soon"}, "unique_for"),
        ({"unique_for": 5, "unique_until": "forever"}, "unique_until"),
    ],
)
def test_bad_unique_options_are_refused_when_the_class_is_defined(options, message):
    with pytest.raises(JobDefinitionError, match=message):
        type("BadUnique", (Job,), {"__module__": __name__, **options})
