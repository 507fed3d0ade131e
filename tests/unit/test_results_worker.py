"""What a worker keeps of each job: a value only when there is one, a failure, progress."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

import kashq
from kashq import FailJob, Job, Outcome, Worker, WorkerOptions
from kashq.drivers.base import Reservation
from kashq.drivers.memory import MemoryDriver
from kashq.events import recorder as recorder_module
from kashq.events.memory import MemoryEventStore, NullEventStore
from kashq.events.recorder import EventRecorder
from kashq.failed.memory import MemoryFailedJobStore
from kashq.jobevents import EventKind, JobEvent
from kashq.results.base import Progress, StoredResult
from kashq.results.memory import MemoryResultStore
from kashq.testing import FakeClock
from kashq.worker import progress as progress_module


class SpyStore(MemoryResultStore):
    """A memory result store that remembers what was put, and whether the job was still queued."""

    def __init__(self, driver: MemoryDriver, clock: FakeClock) -> None:
        super().__init__(clock)
        self.driver = driver
        self.puts: list[tuple[StoredResult, float, bool]] = []
        self.progress_puts: list[list[Progress]] = []

    def put(self, result: StoredResult, ttl_s: float) -> None:
        queued = self.driver.find(result.job_id) is not None
        self.puts.append((result, ttl_s, queued))
        super().put(result, ttl_s)

    def put_progress(self, updates: Sequence[Progress], ttl_s: float) -> None:
        self.progress_puts.append(list(updates))
        super().put_progress(updates, ttl_s)


@dataclass
class Harness:
    clock: FakeClock
    driver: MemoryDriver
    results: SpyStore
    worker: Worker

    def push(self, job: kashq.job.Dispatchable) -> str:
        env = job.to_envelope(default_queue="default", now=self.clock.time())
        self.driver.push(env)
        return env.id


@pytest.fixture
def h() -> Harness:
    clock = FakeClock()
    driver = MemoryDriver(clock=clock)
    results = SpyStore(driver, clock)
    options = WorkerOptions(result_ttl_s=3600, backoff=0)
    worker = Worker(driver, MemoryFailedJobStore(), options, clock=clock, results=results)
    return Harness(clock, driver, results, worker)


class ReturnsNone(Job):
    def handle(self) -> None:
        pass


class ReturnsValue(Job):
    n: int

    def handle(self) -> dict[str, int]:
        return {"n": self.n}


class KeepsNothing(ReturnsValue):
    result_ttl = 0


class KeepsAMinute(ReturnsValue):
    result_ttl = 60


class ReturnsObject(Job):
    def handle(self) -> object:
        return object()


class Gives(Job):
    tries = 3

    def handle(self) -> None:
        raise FailJob("no such account")


def test_a_job_returning_none_writes_nothing(h):
    for _ in range(5):
        h.push(ReturnsNone())
    while h.worker.run_next() is not None:
        pass
    assert h.results.puts == []


def test_a_value_is_kept_as_json_before_the_job_is_acknowledged(h):
    job_id = h.push(ReturnsValue(n=3))
    assert h.worker.run_next() is Outcome.COMPLETED
    [(result, ttl_s, queued)] = h.results.puts
    assert (result.job_id, result.status, result.value, result.attempts) == (
        job_id,
        "completed",
        '{"n":3}',
        1,
    )
    assert ttl_s == 3600
    assert queued, "the result is written while the job is still held, before its ack"


def test_the_class_result_ttl_wins_and_zero_keeps_nothing(h):
    h.push(KeepsNothing(n=1))
    h.push(KeepsAMinute(n=2))
    while h.worker.run_next() is not None:
        pass
    assert [(r.value, ttl) for r, ttl, _ in h.results.puts] == [('{"n":2}', 60.0)]


def test_a_value_json_cannot_carry_completes_the_job_and_says_why(h):
    job_id = h.push(ReturnsObject())
    assert h.worker.run_next() is Outcome.COMPLETED
    stored = h.results.get(job_id)
    assert stored is not None and stored.value is None
    assert "cannot be stored as JSON" in stored.error


def test_a_failure_is_kept_with_its_reason(h):
    job_id = h.push(Gives())
    assert h.worker.run_next() is Outcome.FAILED
    stored = h.results.get(job_id)
    assert stored is not None
    assert (stored.status, stored.error, stored.reason) == ("failed", "no such account", "fail_job")


def test_a_result_store_that_is_down_never_changes_the_outcome(h, caplog):
    def broken(result: StoredResult, ttl_s: float) -> None:
        raise kashq.DriverError("result store down")

    h.results.put = broken  # type: ignore[method-assign]
    h.push(ReturnsValue(n=1))
    assert h.worker.run_next() is Outcome.COMPLETED
    assert h.driver.sizes(["default"])["default"].total == 0
    assert "could not keep the outcome" in caplog.text


def test_a_result_store_bug_never_keeps_a_job_from_its_ack(h, caplog):
    def broken(result: StoredResult, ttl_s: float) -> None:
        raise RuntimeError("a bug in a store")

    h.results.put = broken  # type: ignore[method-assign]
    h.push(ReturnsValue(n=1))
    assert h.worker.run_next() is Outcome.COMPLETED
    assert h.driver.sizes(["default"])["default"].total == 0
    assert "RuntimeError: a bug in a store" in caplog.text


# -- progress ---------------------------------------------------------------------


class Reports(Job):
    steps: int

    def handle(self) -> None:
        for i in range(1, self.steps + 1):
            self.progress(i / self.steps, f"{i} of {self.steps}")


def test_progress_is_rate_limited_per_job_and_the_last_report_always_passes(h, monkeypatch):
    seen: list[JobEvent] = []
    sunk: list[float] = []
    h.worker.add_listener(lambda e: seen.append(e) if e.kind is EventKind.PROGRESS else None)
    h.worker.send_progress_to(lambda job_id, fraction, message, at: sunk.append(fraction))
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: 5.0)  # all at one instant
    h.push(Reports(steps=1000))
    h.worker.run_next()
    assert len(sunk) == 1000, "every report reaches the result store's sink"
    assert [(e.progress, e.message) for e in seen] == [(0.001, "1 of 1000"), (1.0, "1000 of 1000")]
    seen.clear()
    ticks = iter(range(10_000))
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(ticks) * 0.3)
    h.push(Reports(steps=4))
    h.worker.run_next()
    assert [e.progress for e in seen] == [0.25, 0.75, 1.0]  # 0.5 came 0.3 s after 0.25


def test_progress_outside_a_worker_does_nothing_and_bad_values_are_refused():
    job = Reports(steps=1)
    job.progress(0.5)
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(ValueError, match="progress must be"):
            job.progress(bad)  # type: ignore[arg-type]


def _progress_event(job_id: str, fraction: float) -> JobEvent:
    res = Reservation(job_id, "q", "", 1, "token")
    return JobEvent(EventKind.PROGRESS, res, None, "t", "q", 1, time.time(), progress=fraction)


class CountingResults(MemoryResultStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[Progress]] = []

    def put_progress(self, updates: Sequence[Progress], ttl_s: float) -> None:
        self.calls.append(list(updates))
        super().put_progress(updates, ttl_s)


@pytest.mark.parametrize("events_on", [True, False])
def test_the_recorder_writes_the_latest_progress_of_each_job_in_one_batch(events_on):
    results = CountingResults()
    events = MemoryEventStore() if events_on else NullEventStore()
    recorder = EventRecorder(events, results=results, result_ttl_s=60, flush_interval_s=60)
    try:
        for job_id, fraction in (("a", 0.1), ("b", 0.5), ("a", 0.2)):
            recorder.progress(job_id, fraction, f"{fraction:.0%}", time.time())
            recorder.listener(_progress_event(job_id, fraction))
        assert recorder.flush()
        [batch] = results.calls
        assert sorted((p.job_id, p.fraction) for p in batch) == [("a", 0.2), ("b", 0.5)]
        stored = results.get("a")
        assert stored is not None and (stored.progress, stored.message) == (0.2, "20%")
        assert stored.status is None
        logged = [(e.job_id, e.details["progress"]) for e in events.read()]
        assert logged == ([("a", 0.1), ("b", 0.5), ("a", 0.2)] if events_on else [])
    finally:
        recorder.close()


def test_progress_waiting_for_a_result_store_that_is_down_is_capped(monkeypatch):
    monkeypatch.setattr(recorder_module, "_PROGRESS_MAX", 3)
    results = CountingResults()
    recorder = EventRecorder(NullEventStore(), results=results, flush_interval_s=60)
    try:
        for n in range(5):
            recorder.progress(f"job-{n}", 0.5, "", time.time())
        assert recorder.flush()
        assert sorted(p.job_id for p in results.calls[0]) == ["job-2", "job-3", "job-4"]
    finally:
        recorder.close()
