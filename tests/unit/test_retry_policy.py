"""The retry policy: every backoff form, retry_until, fail_on/retry_on,
max_exceptions and FailJob, on a fake clock, with the stop reason recorded."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest

import kashq
from kashq import Exponential, FailJob, Job, NamedJob, Outcome, StopReason, Worker, WorkerOptions
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import decode
from kashq.exceptions import JobDefinitionError
from kashq.failed.base import FailedJob
from kashq.failed.memory import MemoryFailedJobStore
from kashq.jobevents import EventKind, JobEvent
from kashq.middleware import ReleaseJob
from kashq.testing import FakeClock, memory_queue

HOOKS: list[BaseException] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    HOOKS.clear()


class Harness:
    """A worker on a memory driver and a fake clock, recording each retry's delay."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.driver = MemoryDriver(clock=self.clock)
        self.store = MemoryFailedJobStore()
        self.delays: list[float] = []
        self.worker = Worker(
            self.driver,
            self.store,
            WorkerOptions(**options),
            clock=self.clock,
            listeners=[self._seen],
        )

    def _seen(self, event: JobEvent) -> None:
        if event.kind is EventKind.RETRIED and event.delay_s is not None:
            self.delays.append(event.delay_s)

    def push(self, job: kashq.job.Dispatchable) -> str:
        env = job.to_envelope(default_queue="default", now=self.clock.time())
        self.driver.push(env)
        return env.id

    def run_all(self) -> list[Outcome]:
        """Run attempts until the job is gone, jumping the clock to each retry."""
        outcomes: list[Outcome] = []
        while True:
            outcome = self.worker.run_next()
            if outcome is None:
                if not self.driver.sizes(["default"])["default"].delayed:
                    return outcomes
                self.clock.advance(self.delays[-1] if self.delays else 0)
                continue
            outcomes.append(outcome)

    def failed(self) -> FailedJob:
        [record] = self.store.all()
        return record


class Boom(Job):
    tries = 5

    def handle(self) -> None:
        raise RuntimeError("boom")

    def failed(self, error: BaseException) -> None:
        HOOKS.append(error)


class Steps(Boom):
    backoff = (1, 5, 30)


class Exp(Boom):
    tries = 6
    backoff = Exponential(base=2, factor=3, max=60)


class ByMethod(Boom):
    tries = 4

    def backoff(self, attempt: int, error: BaseException) -> float:  # type: ignore[override]
        return 10.0 * attempt + (0.5 if isinstance(error, RuntimeError) else 0)


class BadMethod(Boom):
    tries = 3

    def backoff(self, attempt: int, error: BaseException) -> float:  # type: ignore[override]
        return -1 if attempt == 1 else 1 / 0


# -- backoff forms ------------------------------------------------------------


def test_a_number_is_linear_backoff():
    h = Harness(backoff=0)
    h.push(Boom.model_construct().with_backoff(3))
    h.run_all()
    assert h.delays == [3, 6, 9, 12]


def test_a_list_waits_each_value_in_turn_and_repeats_the_last():
    h = Harness()
    h.push(Steps())
    assert h.run_all() == [Outcome.RETRIED] * 4 + [Outcome.FAILED]
    assert h.delays == [1, 5, 30, 30]
    assert h.failed().reason == StopReason.TRIES.value == "tries_exhausted"


def test_exponential_multiplies_by_its_factor_up_to_its_max():
    h = Harness()
    h.push(Exp())
    h.run_all()
    assert h.delays == [2, 6, 18, 54, 60]


def test_a_backoff_method_gets_the_attempt_and_the_error():
    h = Harness()
    h.push(ByMethod())
    h.run_all()
    assert h.delays == [10.5, 20.5, 30.5]


def test_a_backoff_method_that_fails_falls_back_to_the_worker_default(caplog):
    h = Harness(backoff=[7])
    h.push(BadMethod())
    assert h.run_all() == [Outcome.RETRIED, Outcome.RETRIED, Outcome.FAILED]
    assert h.delays == [7, 7]
    assert "returned -1" in caplog.text and "ZeroDivisionError" in caplog.text


def test_per_dispatch_backoff_wins_over_the_class():
    h = Harness()
    h.push(Steps().with_backoff(Exponential(base=1, factor=10, max=1000)))
    h.run_all()
    assert h.delays == [1, 10, 100, 1000]


def test_the_worker_default_applies_to_jobs_without_their_own():
    h = Harness(backoff=kashq.retry.parse_backoff("exponential:base=0.5,max=3"))
    h.push(Boom())
    h.run_all()
    assert h.delays == [0.5, 1, 2, 3]


def test_a_named_job_carries_a_list_backoff_in_its_envelope():
    @kashq.handler("tests.retry_policy.named_boom")
    def named_boom(envelope: kashq.Envelope) -> None:
        raise RuntimeError("boom")

    h = Harness(tries=3)
    job_id = h.push(NamedJob("tests.retry_policy.named_boom").with_backoff([4, 2]))
    h.run_all()
    assert h.delays == [4, 2]
    assert decode(h.failed().payload).id == job_id


def test_jitter_draws_below_the_delay_and_never_above():
    exp = Exponential(base=10, factor=2, max=100, jitter=0.5)
    assert exp.delay_s(2, rand=lambda: 0.0) == 20
    assert exp.delay_s(2, rand=lambda: 1.0) == 10
    assert exp.delay_s(2, rand=lambda: 0.5) == 15
    full = Exponential(base=10, jitter=True)
    assert full.jitter == 1 and full.delay_s(1, rand=lambda: 0.999) == pytest.approx(0.01)
    assert Exponential().delay_s(5000) == 600  # far past the cap: no overflow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", kashq.retry.Linear(2.0)),
        (" 1, 5 ,30 ", kashq.retry.Steps((1.0, 5.0, 30.0))),
        ("exponential", Exponential()),
        ("Exponential:base=2,max=120,jitter=0.25", Exponential(base=2, max=120, jitter=0.25)),
    ],
)
def test_backoff_text_forms(text, expected):
    assert kashq.retry.parse_backoff(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1", ">= 0"),
        ("1,x", "'x'"),
        ("soon", "'soon'"),
        ("exponential:base=1,speed=2", "speed=2"),
        ("exponential:factor=0.5", "factor must be a number >= 1"),
        ("exponential:jitter=2", "jitter must be between 0 and 1"),
    ],
)
def test_bad_backoff_text_is_one_clear_error(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        kashq.retry.parse_backoff(text)


def test_a_bad_backoff_setting_is_a_config_error(monkeypatch):
    monkeypatch.setenv("KASHQ_BACKOFF", "1,,5")
    with pytest.raises(kashq.ConfigError, match="KASHQ_BACKOFF"):
        kashq.load_settings()


# -- retry_until -------------------------------------------------------------


class UntilSpan(Boom):
    tries = 1  # ignored: the deadline decides
    backoff = 10
    retry_until = timedelta(seconds=45)


def test_retry_until_retries_past_tries_until_a_retry_would_run_after_it():
    h = Harness()
    h.push(UntilSpan())
    outcomes = h.run_all()
    assert h.delays == [10, 20]  # at 0, 10, 30; the next would run at 60 > 45
    assert outcomes == [Outcome.RETRIED, Outcome.RETRIED, Outcome.FAILED]
    assert h.failed().reason == "retry_until"
    assert len(HOOKS) == 1


class UntilMethod(Boom):
    backoff = 1
    stamp: float

    def retry_until(self) -> datetime:  # type: ignore[override]
        return datetime.fromtimestamp(self.stamp, tz=timezone.utc)


def test_retry_until_as_a_method_is_called_at_dispatch():
    h = Harness()
    h.push(UntilMethod(stamp=h.clock.time() + 2.5))
    h.run_all()
    assert h.delays == [1]  # a retry at 1; the next would run at 1 + 2 > 2.5
    assert h.failed().reason == "retry_until"


def test_with_retry_until_on_a_dispatch_overrides_the_class():
    h = Harness()
    h.push(Steps().with_max_retries(1).with_retry_until(timedelta(seconds=3600)))
    assert h.worker.run_next() is Outcome.RETRIED  # tries=1 alone would have failed it


# -- which errors are retried ----------------------------------------------------


class FailOn(Boom):
    fail_on = (KeyError, ValueError)
    error: str = "value"

    def handle(self) -> None:
        raise ValueError("bad input") if self.error == "value" else RuntimeError("flaky")


class RetryOn(Boom):
    backoff = 0
    retry_on = ConnectionError  # one class is taken as a tuple of one
    error: str = "connection"

    def handle(self) -> None:
        raise ConnectionError("down") if self.error == "connection" else TypeError("bug")


@pytest.mark.parametrize(
    ("job", "outcomes", "reason"),
    [
        (FailOn(), [Outcome.FAILED], "fail_on"),
        (
            FailOn(error="runtime").with_backoff(0),
            [Outcome.RETRIED] * 4 + [Outcome.FAILED],
            "tries_exhausted",
        ),
        (RetryOn(), [Outcome.RETRIED] * 4 + [Outcome.FAILED], "tries_exhausted"),
        (RetryOn(error="type"), [Outcome.FAILED], "retry_on"),
    ],
)
def test_fail_on_and_retry_on_choose_which_errors_are_retried(job, outcomes, reason):
    h = Harness()
    h.push(job)
    assert h.run_all() == outcomes
    assert h.failed().reason == reason
    assert len(HOOKS) == 1


class MaxExceptions(Boom):
    tries = 25
    max_exceptions = 3
    backoff = 0
    rate_limited: ClassVar[list[bool]] = [True, False, True, False, True, False]

    def handle(self) -> None:
        if self.rate_limited and self.rate_limited.pop(0):
            raise ReleaseJob(1, count_attempt=True)
        raise RuntimeError("boom")


def test_max_exceptions_counts_errors_but_not_releases():
    h = Harness()
    h.push(MaxExceptions())
    outcomes = h.run_all()
    assert outcomes == [Outcome.RETRIED] * 5 + [Outcome.FAILED]
    record = h.failed()
    assert (record.reason, record.attempts) == ("max_exceptions", 6)
    assert decode(record.payload).exceptions == 3


class GivesUp(Boom):
    def handle(self) -> None:
        raise FailJob("the account is closed")


def test_fail_job_fails_at_once_with_its_message():
    h = Harness()
    h.push(GivesUp())
    assert h.run_all() == [Outcome.FAILED]
    record = h.failed()
    assert (record.reason, record.error) == ("fail_job", "the account is closed")
    assert record.attempts == 1
    assert isinstance(HOOKS[0], FailJob)


# -- the stop reason of every other way a job fails ---------------------------------


class Slow(Job):
    tries = 2
    backoff = 0
    timeout = 0.01

    async def handle(self) -> None:
        await asyncio.sleep(1)


def test_a_job_whose_last_try_timed_out_says_so():
    h = Harness()
    h.push(Slow())
    h.run_all()
    assert h.failed().reason == "timed_out"


def test_jobs_that_cannot_run_say_why():
    h = Harness()
    h.push(NamedJob("tests.retry_policy.nobody_handles_this"))
    env = UntilMethod(stamp=0).to_envelope(default_queue="default", now=h.clock.time())
    env.payload = {"stamp": "soon"}
    h.driver.push(env)
    assert h.run_all() == [Outcome.FAILED, Outcome.FAILED]
    assert sorted(r.reason for r in h.store.all()) == ["invalid_payload", "unknown_type"]


def test_a_lost_worker_is_the_reason_when_deliveries_run_out():
    h = Harness(lease_s=5)
    h.push(Boom().with_max_retries(1))
    h.driver.reserve(["default"], lease_s=5)  # a worker takes it and dies
    h.clock.advance(6)
    assert h.worker.run_next() is Outcome.FAILED
    assert h.failed().reason == "worker_lost"


def test_the_reason_survives_a_failure_parked_while_the_store_was_down():
    env = Boom().to_envelope(default_queue="default", now=0)
    parked = decode(
        env.encode()[:-1] + ',"failure":{"error":"e","exception":"t","reason":"fail_on"}}'
    )
    assert parked.failure is not None and parked.failure.reason == "fail_on"
    assert decode(parked.encode()) == parked


# -- declaring the rules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backoff": []}, "at least one delay"),
        ({"backoff": [1, -2]}, r"backoff\[1\]"),
        ({"backoff": "fast"}, "seconds or a timedelta"),
        ({"retry_until": 5}, "datetime or a timedelta"),
        ({"fail_on": (ValueError, "KeyError")}, "tuple of exception classes"),
        ({"retry_on": [int]}, "tuple of exception classes"),
        ({"max_exceptions": 0}, "max_exceptions must be >= 1"),
    ],
)
def test_bad_retry_options_are_refused_when_the_class_is_defined(options, message):
    with pytest.raises(JobDefinitionError, match=message):
        type("Bad", (Boom,), {"__module__": __name__, **options})


def test_memory_queue_drain_runs_every_retry_at_its_time():
    seen: list[float] = []

    class Timed(Job):
        tries = 4
        backoff = (1, 5, 30)

        def handle(self) -> None:
            seen.append(q.clock.time())
            raise RuntimeError("again")

    with memory_queue() as q:
        start = q.clock.time()
        Timed().dispatch()
        q.drain()
        assert [t - start for t in seen] == [0, 1, 6, 36]
        assert q.failed()[0].reason == "tries_exhausted"
