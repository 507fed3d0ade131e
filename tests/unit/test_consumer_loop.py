"""A consumer thread's loop state: acks kept for the next reserve, prefetched jobs, backoff."""

from __future__ import annotations

from kashq.drivers.base import Reservation
from kashq.worker.loop import ConsumerLoop
from kashq.worker.outcome import Outcome
from kashq.worker.prefetch import PrefetchedJobs


def reservation(n: int) -> Reservation:
    return Reservation(id=f"job-{n}", queue="default", raw="{}", deliveries=1, token=f"t{n}")


def test_only_a_completed_job_waits_to_be_acknowledged_with_the_next_reserve() -> None:
    loop = ConsumerLoop(PrefetchedJobs())
    for n, outcome in enumerate([Outcome.COMPLETED, Outcome.FAILED, Outcome.RETRIED]):
        loop.ran(reservation(n), outcome, loop.running())

    assert loop.acks == [reservation(0)]
    assert loop.waiting.running_since is None
    assert loop.last_s is not None and loop.last_s >= 0

    loop.sent_acks()
    assert loop.acks == []


def test_the_first_job_of_a_batch_runs_and_the_others_wait() -> None:
    loop = ConsumerLoop(PrefetchedJobs())

    assert loop.first_of([]) is None
    assert loop.first_of([reservation(1), reservation(2), reservation(3)]) == reservation(1)
    waiting = [loop.waiting.take(), loop.waiting.take(), loop.waiting.take()]
    assert [taken[0] if taken else None for taken in waiting] == [
        reservation(2),
        reservation(3),
        None,
    ]


def test_the_pause_after_failed_rounds_doubles_from_a_tenth_of_a_second_up_to_five() -> None:
    loop = ConsumerLoop(PrefetchedJobs())

    assert [loop.pause() for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
