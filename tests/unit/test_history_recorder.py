"""A worker's jobs reach the metrics history: counted, timed, written in one add per flush."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from kashq import Job, Worker, WorkerOptions
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope
from kashq.exceptions import DriverError
from kashq.failed.memory import MemoryFailedJobStore
from kashq.history import MemoryHistoryStore, MinuteFigures
from kashq.history import recorder as recorders
from kashq.history.recorder import HistoryRecorder
from kashq.testing import FakeClock


class Quick(Job):
    def handle(self) -> None:
        pass


class Breaks(Job):
    tries = 2

    def handle(self) -> None:
        raise RuntimeError("no")


class Down(MemoryHistoryStore):
    """A store that refuses writes while ``down`` is set."""

    down = True

    def add(self, figures: Sequence[MinuteFigures]) -> None:
        if self.down:
            raise DriverError("history store down")
        super().add(figures)


def drained(clock: FakeClock, store: MemoryHistoryStore) -> HistoryRecorder:
    driver = MemoryDriver(clock=clock)
    recorder = HistoryRecorder(store, flush_interval_s=3600)
    options = WorkerOptions(backoff=0, queues=("default", "risky"))
    worker = Worker(
        driver, MemoryFailedJobStore(), options, clock=clock, listeners=[recorder.listener]
    )

    def push(job: Job, **fields: object) -> Envelope:
        env = job.to_envelope(default_queue="default", now=clock.time())
        driver.push(dataclasses.replace(env, **fields))  # type: ignore[arg-type]
        return env

    for _ in range(3):
        push(Quick())
    push(Breaks(), queue="risky")
    clock.advance(7)  # every job has waited 7 s when it starts
    worker.drain()
    return recorder


def test_a_drain_is_counted_per_minute_queue_and_type() -> None:
    clock = FakeClock(start=6_000_000.0)
    store = MemoryHistoryStore(clock)
    recorder = drained(clock, store)
    assert store.spans() == 0  # nothing written before the flush
    assert recorder.flush()
    minute = int(clock.time() // 60)
    quick, breaks = store.read(minute, minute)
    assert (quick.queue, quick.job_type) == ("default", Quick().type_name)
    assert (quick.done, quick.failed, quick.retried, quick.runs, quick.waits) == (3, 0, 0, 3, 3)
    # from each attempt's end: it ran duration_s (real time) before, due 7 s before that
    assert quick.wait_max_ms == pytest.approx(7000.0, abs=1) and quick.wait_ms == pytest.approx(
        21_000.0, abs=3
    )
    assert (breaks.queue, breaks.done, breaks.failed, breaks.retried, breaks.runs) == (
        "risky", 0, 1, 1, 2
    )  # fmt: skip
    recorder.close()


def test_figures_are_kept_while_the_store_is_down_and_written_once_back() -> None:
    clock = FakeClock(start=6_000_000.0)
    store = Down(clock)
    recorder = drained(clock, store)
    assert not recorder.flush()
    assert not recorder.flush()  # still down: nothing lost, nothing doubled
    store.down = False
    assert recorder.flush()
    minute = int(clock.time() // 60)
    assert sum(f.done for f in store.read(minute, minute)) == 3
    recorder.close()


def test_while_the_store_is_down_at_most_so_many_series_are_kept(monkeypatch) -> None:
    monkeypatch.setattr(recorders, "PENDING_SERIES_MAX", 1)
    clock = FakeClock(start=6_000_000.0)
    recorder = drained(clock, Down(clock))  # two series: default/Quick and risky/Breaks
    assert not recorder.flush()
    assert recorder.dropped == 1
    recorder.close()
