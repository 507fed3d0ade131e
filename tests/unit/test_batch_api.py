"""``kashq.batch``: the builder's checks, ``memory_queue().drain()`` and the sync connection
running batches with their callbacks, nesting, adding from inside, the fake's
``assert_batched``, and the batch's events."""

from __future__ import annotations

import pytest

import kashq
from kashq.events import store_for as events_for
from kashq.exceptions import JobDefinitionError
from kashq.testing import fake, memory_queue

RAN: list[object] = []


class Part(kashq.Job):
    n: int

    def handle(self) -> int:
        RAN.append(("part", self.n))
        return self.n


class Grows(kashq.Job):
    def handle(self) -> None:
        batch = self.batch()
        assert batch is not None
        RAN.append(("grows", batch.total))
        batch.add([Part(n=100), [Part(n=101), Part(n=102)]])


class Summary(kashq.Job):
    def handle(self) -> None:
        batch = self.batch()
        RAN.append(("summary", batch.total, batch.processed, batch.results()))


@kashq.handler("tests.batch_over")
def over(envelope: kashq.Envelope) -> None:
    RAN.append(("over", envelope.metadata["kashq.batch_id"]))


@pytest.fixture(autouse=True)
def _fresh_log():
    RAN.clear()


def test_a_job_adds_to_its_batch_and_the_chord_sees_every_result_in_order():
    with memory_queue() as q:
        batch = kashq.batch([Part(n=1), Grows()]).then(Summary()).finally_(over).dispatch()
        q.drain()
        assert kashq.find_batch(batch.id).total == 5
        assert kashq.find_batch("no-such-batch") is None
        assert kashq.find_batch("x" * 99) is None
    assert ("grows", 2) in RAN
    assert RAN[-2:] == [("summary", 5, 5, [1, None, 100, 101, 102]), ("over", batch.id)]


def test_the_sync_connection_runs_a_batch_and_its_callbacks_in_the_dispatch(monkeypatch):
    monkeypatch.setenv("KASHQ_CONNECTION", "sync")
    kashq.configure()
    try:
        batch = kashq.batch([Part(n=1), [Part(n=2), Part(n=3)]]).then(Summary()).dispatch()
        assert batch.fresh().finished
    finally:
        monkeypatch.delenv("KASHQ_CONNECTION")
        kashq.configure()
    assert RAN[-1] == ("summary", 3, 3, [1, 2, 3])


def test_the_event_log_has_the_batch_created_progressing_and_finished():
    with memory_queue(events=True) as q:
        batch = kashq.batch([Part(n=1), Part(n=2)]).name("nightly").dispatch()
        q.drain()
        q.manager.write_records()
        events = events_for(q.driver, q.manager.settings).get_job_events(batch.id)
    kinds = [e.type for e in events]
    assert kinds[0] == "batch_created" and kinds[-1] == "batch_finished"
    assert set(kinds[1:-1]) <= {"batch_progress"}
    assert events[-1].details == {"total": 2, "processed": 2, "failed": 0, "pending": 0}
    assert {e.queue for e in events} == {"nightly"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: kashq.batch([]).dispatch(), "a batch needs at least one job"),
        (lambda: kashq.batch(["Part"]), "a batch takes jobs and chains"),
        (lambda: kashq.batch([Part(n=1)]).name(7), "a batch name is text"),
        (lambda: kashq.batch([Part(n=1)]).then(lambda b: None), "is not registered"),
        (
            lambda: (
                kashq.batch([Part(n=1).on_connection("redis")]).on_connection("database").dispatch()
            ),
            "a batch runs on one connection",
        ),
    ],
)
def test_a_bad_batch_is_refused_in_one_line(build, message):
    with memory_queue(), pytest.raises(JobDefinitionError, match=message):
        build()


def test_the_fake_records_batches_and_asserts_them():
    with fake() as queue:
        batch = kashq.batch([Part(n=1), [Part(n=2), Part(n=3)]]).name("import").dispatch()
        assert (batch.total, batch.pending, batch.finished) == (3, 3, False)
        queue.assert_batched()
        queue.assert_batched(lambda b: b.label == "import" and len(b.jobs()) == 3)
        queue.assert_not_dispatched(Part)  # a batch's jobs are the batch's, not dispatches
        with pytest.raises(AssertionError, match="batches dispatched: import x3"):
            queue.assert_batched(lambda b: b.label == "export")
    with fake() as queue, pytest.raises(AssertionError, match="batches dispatched: none"):
        queue.assert_batched()
    assert RAN == []


class Boom(kashq.Job):
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("no")


class Caught(kashq.Job):
    def handle(self) -> None:
        error = self.chain_error()
        RAN.append(("caught", error.job_type, error.error))


def test_a_batch_inside_a_chain_runs_after_the_step_before_and_before_the_step_after():
    with memory_queue() as q:
        kashq.chain(
            [Part(n=1), kashq.batch([Part(n=2), [Part(n=3), Part(n=4)]]), Part(n=5)]
        ).dispatch()
        q.drain()
    assert RAN[0] == ("part", 1) and RAN[-1] == ("part", 5)
    assert sorted(RAN[1:4]) == [("part", 2), ("part", 3), ("part", 4)]


def test_a_failure_in_a_batch_inside_a_chain_ends_the_chain_with_its_catch_once():
    with memory_queue() as q:
        kashq.chain([kashq.batch([Boom(), Part(n=1)]), Part(n=9)]).catch(Caught()).dispatch()
        q.drain()
    assert ("part", 9) not in RAN
    assert [r for r in RAN if r[0] == "caught"] == [
        ("caught", "kashq.batch", "a job of the batch failed for good")
    ]


def test_the_fake_asserts_a_chain_holding_a_batch():
    with fake() as queue:
        kashq.chain([Part(n=1), kashq.batch([Part(n=2)]), Part(n=3)]).dispatch()
        queue.assert_chained([Part, kashq.PendingBatch, Part])
        with pytest.raises(AssertionError, match=r"Part -> batch -> .*Part"):
            queue.assert_chained([Part, Part, Part])
