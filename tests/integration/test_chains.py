"""Chains on every driver: steps in order, a step's result passed on, ``catch`` once.

Runs on the contract suite's ``driver`` fixture (every driver, Redis Cluster and
the sharded strategies included), with a worker in this process on that driver.
"""

from __future__ import annotations

import dataclasses

import pytest

import kashq
from kashq.drivers.base import Driver
from kashq.envelope import Envelope
from kashq.exceptions import DriverError
from kashq.failed.memory import MemoryFailedJobStore
from kashq.testing import FakeClock
from kashq.worker import Worker, WorkerOptions
from kashq.workflows.chain import PendingChain
from tests.integration import test_driver_contract as contract

clock, driver = contract.clock, contract.driver
RAN: list[tuple[str, object]] = []


class Step(kashq.Job):
    n: int

    def handle(self) -> int:
        RAN.append(("step", self.n))
        return self.n * 10


class Adds(kashq.Job):
    def handle(self) -> None:
        RAN.append(("adds", self.previous_result()))
        self.append_to_chain(Step(n=99))
        self.prepend_to_chain(Step(n=7))


class Breaks(kashq.Job):
    tries = 1

    def handle(self) -> None:
        RAN.append(("breaks", None))
        raise ValueError("the step broke")


class Caught(kashq.Job):
    def handle(self) -> None:
        RAN.append(("caught", self.chain_error()))


@pytest.fixture(autouse=True)
def _fresh_log():
    RAN.clear()


def head_of(chain: PendingChain, clock: FakeClock) -> Envelope:
    return chain.envelopes(lambda job: job.to_envelope(default_queue="default", now=clock.time()))


def drain(driver: Driver, clock: FakeClock, **options) -> Worker:
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(**options), clock=clock)
    worker.drain()
    return worker


def test_steps_run_in_order_each_reading_the_one_before(driver, clock):
    driver.push(head_of(kashq.chain([Step(n=1), Adds(), Step(n=2)]), clock))
    drain(driver, clock)
    assert RAN == [("step", 1), ("adds", 10), ("step", 7), ("step", 2), ("step", 99)]


def test_a_step_failing_for_good_ends_the_chain_and_catch_runs_once(driver, clock):
    chain = kashq.chain([Step(n=1), Breaks(), Step(n=3)]).catch(Caught())
    driver.push(head := head_of(chain, clock))
    worker = drain(driver, clock)
    (caught,) = [value for name, value in RAN if name == "caught"]
    assert [name for name, _ in RAN] == ["step", "breaks", "caught"]
    assert isinstance(caught, kashq.ChainError)
    assert (caught.chain_id, caught.error) == (head.id, "ValueError: the step broke")
    assert caught.job_type == Breaks.__kashq_name__
    [failed] = worker.failed_store.all()
    assert failed.uuid == caught.job_id
    driver.push(dataclasses.replace(head))  # the chain delivered again from the start
    drain(driver, clock)
    assert [name for name, _ in RAN].count("caught") == 1  # its catch is not pushed twice


def test_a_step_delivered_twice_pushes_its_successor_once(driver, clock):
    driver.push(head := head_of(kashq.chain([Step(n=1), Step(n=2)]), clock))
    drain(driver, clock)
    driver.push(head)  # as if its worker died after pushing the next step, before the ack
    drain(driver, clock)
    assert RAN == [("step", 1), ("step", 2), ("step", 1)]


class _PushOnceFails:
    """A driver whose first ``push_once`` fails, as if the connection dropped."""

    def __init__(self, inner: Driver) -> None:
        self._inner = inner
        self.failures = 1

    def push_once(self, envelope, keep_s=86_400.0):
        if self.failures:
            self.failures -= 1
            raise DriverError("push failed on redis://lost: connection reset")
        return self._inner.push_once(envelope, keep_s)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_step_whose_successor_could_not_be_pushed_pushes_it_later_without_running_again():
    inner = kashq.MemoryDriver(clock=(clock := FakeClock()))
    flaky = _PushOnceFails(inner)
    flaky.push(head_of(kashq.chain([Step(n=1), Step(n=2)]), clock))
    worker = drain(flaky, clock, park_s=1.0)
    assert RAN == [("step", 1), ("step", 2)]
    assert flaky.failures == 0
    assert worker.stats.completed == 2


def test_a_batch_inside_a_chain_holds_the_chain_until_its_jobs_completed(driver, clock):
    chain = kashq.chain([Step(n=1), kashq.batch([Step(n=2), [Step(n=3), Step(n=4)]]), Step(n=5)])
    driver.push(head_of(chain, clock))
    drain(driver, clock)
    assert RAN[0] == ("step", 1) and RAN[-1] == ("step", 5)
    assert sorted(RAN[1:4]) == [("step", 2), ("step", 3), ("step", 4)]
