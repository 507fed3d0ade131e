"""kashq.testing: the queue fake's assertions and the memory drain helper."""

from __future__ import annotations

import pytest

import kashq
from kashq import Job
from kashq.drivers.base import QueueSizes
from kashq.testing import FakeClock, fake, memory_queue

DONE: list[int] = []


class SendWelcomeEmail(Job):
    user_id: int
    queue = "emails"

    def handle(self) -> None:
        DONE.append(self.user_id)


class Unrelated(Job):
    def handle(self) -> None:
        DONE.append(-1)


class Flaky(Job):
    def handle(self) -> None:
        raise RuntimeError("always")


def test_fake_records_dispatches_instead_of_running_them():
    DONE.clear()
    with fake() as queue:
        job_id = SendWelcomeEmail(user_id=1).dispatch()
        kashq.dispatch("tests.named", {"a": 1})
    assert job_id
    assert DONE == []
    queue.assert_dispatched(SendWelcomeEmail)
    queue.assert_dispatched("tests.named")
    assert [j.user_id for j in queue.dispatched(SendWelcomeEmail)] == [1]


def test_fake_is_removed_after_the_block():
    with fake():
        pass
    with memory_queue() as q:
        SendWelcomeEmail(user_id=1).dispatch()
        assert q.sizes("emails")["emails"] == QueueSizes(ready=1)


def test_assert_dispatched_with_predicate_and_count():
    with fake() as queue:
        SendWelcomeEmail(user_id=1).dispatch()
        SendWelcomeEmail(user_id=2).dispatch()
        SendWelcomeEmail(user_id=2).dispatch()
    queue.assert_dispatched(SendWelcomeEmail, count=3)
    queue.assert_dispatched(SendWelcomeEmail, lambda j: j.user_id == 2, count=2)
    with pytest.raises(AssertionError) as info:
        queue.assert_dispatched(SendWelcomeEmail, lambda j: j.user_id == 2, count=1)
    message = str(info.value)
    assert "SendWelcomeEmail to be dispatched matching the given predicate 1 time" in message
    assert "but it was dispatched 2 times" in message


def test_assert_dispatched_failure_lists_what_was_dispatched():
    with fake() as queue:
        Unrelated().dispatch()
    with pytest.raises(AssertionError) as info:
        queue.assert_dispatched(SendWelcomeEmail)
    message = str(info.value)
    assert "SendWelcomeEmail to be dispatched at least once" in message
    assert "dispatched 0 times" in message
    assert "Unrelated on 'default' x1" in message


def test_assert_not_dispatched():
    with fake() as queue:
        SendWelcomeEmail(user_id=5).dispatch()
    queue.assert_not_dispatched(Unrelated)
    queue.assert_not_dispatched(SendWelcomeEmail, lambda j: j.user_id == 6)
    with pytest.raises(AssertionError, match="not to be dispatched, but it was dispatched 1 time"):
        queue.assert_not_dispatched(SendWelcomeEmail)


def test_assert_nothing_dispatched():
    with fake() as queue:
        pass
    queue.assert_nothing_dispatched()
    with fake() as queue:
        Unrelated().dispatch()
    with pytest.raises(AssertionError, match="Expected no jobs to be dispatched, but 1 were"):
        queue.assert_nothing_dispatched()


def test_assert_dispatched_on_checks_the_queue():
    with fake() as queue:
        SendWelcomeEmail(user_id=1).dispatch()
        SendWelcomeEmail(user_id=2).on_queue("vip").dispatch()
    queue.assert_dispatched_on("emails", SendWelcomeEmail)
    queue.assert_dispatched_on("vip", SendWelcomeEmail, lambda j: j.user_id == 2)
    with pytest.raises(AssertionError, match="on queue 'default'"):
        queue.assert_dispatched_on("default", SendWelcomeEmail)


def test_memory_queue_drain_runs_everything_including_retries_on_a_fake_clock():
    DONE.clear()
    with memory_queue() as q:
        SendWelcomeEmail(user_id=1).dispatch()
        SendWelcomeEmail(user_id=2).dispatch_after(3600)
        Flaky().dispatch()
        stats = q.drain()
        assert sorted(DONE) == [1, 2]
        assert (stats.completed, stats.retried, stats.failed) == (2, 2, 1)
        assert [f.job_type for f in q.failed()] == [Flaky.__kashq_name__]
        assert kashq.failed_jobs().count() == 1
        assert q.sizes("emails", "default") == {
            "emails": QueueSizes(),
            "default": QueueSizes(),
        }


def test_fake_clock_moves_only_when_told():
    clock = FakeClock(start=100.0)
    assert clock.time() == 100.0
    clock.sleep(2.5)
    clock.advance(1)
    assert clock.time() == 103.5
