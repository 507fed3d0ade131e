"""What a failed job leaves behind: the recorded traceback, the attempts it got, the hook's view."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from typing import Any

import pytest
from pydantic import BaseModel

import kashq
from kashq import Job, Outcome, Worker, WorkerOptions
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope
from kashq.exceptions import FailedStoreError
from kashq.failed.base import FailedJob
from kashq.failed.memory import MemoryFailedJobStore
from kashq.supervisor.child import WorkerProcess
from kashq.supervisor.lines import JobLines
from kashq.supervisor.slots import Slots
from kashq.supervisor.spec import Output, WorkSpec
from kashq.testing import FakeClock

SEEN: list[Any] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


class AsyncFailsWithAsyncHook(Job):
    tries = 1

    async def handle(self) -> None:
        await asyncio.sleep(0)
        raise ValueError("the job's own error")

    async def failed(self, error: BaseException) -> None:
        await asyncio.sleep(0)
        SEEN.append((error, error.__context__, sys.exc_info()[1]))
        raise LookupError("the hook's own error")


class Recipient(BaseModel):
    to: str
    retries_left: int


@kashq.handler("tests.worker_failures.send")
def send(envelope: Envelope) -> None:
    SEEN.append(envelope.payload_as(Recipient))


@kashq.handler("tests.worker_failures.send_async")
async def send_async(envelope: Envelope) -> None:
    await asyncio.sleep(0)
    SEEN.append(envelope.payload_as(Recipient))


def run_one(job: kashq.job.Dispatchable) -> tuple[Outcome | None, MemoryFailedJobStore, Worker]:
    driver = MemoryDriver()
    store = MemoryFailedJobStore()
    driver.push(job.to_envelope(default_queue="default", now=time.time()))
    worker = Worker(driver, store, WorkerOptions(tries=3, backoff=0))
    return worker.run_next(), store, worker


def test_a_failing_async_job_records_its_own_traceback_only(caplog):
    caplog.set_level(logging.ERROR, logger="kashq.worker.execute")
    outcome, store, _ = run_one(AsyncFailsWithAsyncHook())

    assert outcome is Outcome.FAILED
    [record] = store.all()
    assert record.exception.startswith("Traceback")
    assert "ValueError: the job's own error" in record.exception
    assert "no running event loop" not in record.exception
    assert "During handling" not in record.exception
    # The async failed() hook sees the job's error, with nothing chained to it.
    [(error, context, handling)] = SEEN
    assert str(error) == "the job's own error"
    assert context is None
    assert handling is None
    # What the hook raised is logged with its own traceback only.
    [logged] = [r for r in caplog.records if "failed() hook" in r.getMessage()]
    assert logged.exc_text is not None or logged.exc_info is not None
    text = logging.Formatter().formatException(logged.exc_info) if logged.exc_info else ""
    assert "LookupError: the hook's own error" in text
    assert "no running event loop" not in text
    assert "During handling" not in text
    assert "the job's own error" not in text


@pytest.mark.parametrize("name", ["tests.worker_failures.send", "tests.worker_failures.send_async"])
def test_a_handler_whose_payload_fails_validation_is_failed_at_once_naming_the_field(name):
    outcome, store, worker = run_one(kashq.NamedJob(name, {"to": "a@example.com"}))

    assert outcome is Outcome.FAILED
    assert worker.stats.retried == 0
    [record] = store.all()
    assert record.attempts == 1
    assert "retries_left" in record.error
    assert SEEN == []


class FailsOnce(Job):
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("card declined")


class DownStore(MemoryFailedJobStore):
    """A failed-job store that is unreachable while ``down``."""

    down = True

    def log(self, job: FailedJob) -> FailedJob:
        if self.down:
            raise FailedStoreError("connection refused")
        return super().log(job)


def test_a_parked_failure_is_one_fail_line_and_counted_once_however_often_recording_is_retried():
    clock = FakeClock()
    driver = MemoryDriver(clock=clock)
    store = DownStore()
    stream = io.StringIO()
    slots = Slots.create(1)
    process = WorkerProcess(WorkSpec("memory", ("default",), slots_fd=slots.fd))
    worker = Worker(driver, store, WorkerOptions(park_s=5), clock=clock)
    worker.add_listener(JobLines(Output.PLAIN, stream=stream))
    worker.add_listener(process._slot_listener(slots.writer(0)))
    driver.push(FailsOnce().to_envelope(default_queue="default", now=clock.time()))

    outcomes = []
    for attempt in range(4):
        store.down = attempt < 3
        outcomes.append(worker.run_next())
        clock.advance(5)

    assert outcomes == [Outcome.PARKED] * 3 + [Outcome.FAILED]
    assert len(store.all()) == 1
    fail_lines = [line for line in stream.getvalue().splitlines() if line.endswith(" FAIL")]
    assert len(fail_lines) == 1, stream.getvalue()
    view = slots.read(0)
    assert view is not None and view.failed == 1
    slots.close()
