"""``kashq.jobs()``: every state from where it is kept, filters, cursors across queues, and
cancelling by filter (on the memory connection; the drivers' own listing is tested on
every connection in ``tests/integration/test_driver_listing.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import kashq
from kashq import Job, JobCancelled
from kashq.listing import every
from kashq.testing import MemoryQueue, memory_queue


class Mail(Job):
    to: str
    queue = "mail"

    def tags(self) -> list[str]:  # type: ignore[override]
        return [f"to:{self.to}"]

    def handle(self) -> str:
        return self.to


class Report(Job):
    n: int = 0

    def handle(self) -> None:
        if self.n < 0:
            raise kashq.FailJob("negative")
        if self.n == 13:
            raise JobCancelled("unlucky")


@pytest.fixture
def q() -> Iterator[MemoryQueue]:
    with memory_queue(keep_completed=3600) as queue:
        yield queue


def _ids(page: kashq.JobPage) -> list[str]:
    return [job.id for job in page.jobs]


def test_waiting_jobs_are_listed_by_state_with_their_details(q):
    ready = Mail(to="ann").with_tags("vip").dispatch()
    later = Report(n=1).dispatch_after(60)
    (job,) = kashq.jobs(state="ready").jobs
    assert (job.id, job.queue, job.state) == (ready, "mail", "ready")
    assert job.job_type == Mail.__kashq_name__
    assert job.tags == ("to:ann", "vip") and job.available_at is not None
    assert _ids(kashq.jobs(state="delayed")) == [later]
    assert kashq.jobs(state="reserved").jobs == [] and kashq.jobs(state="running").jobs == []


def test_ended_jobs_are_listed_from_where_they_are_kept(q):
    done = Mail(to="bob").dispatch()
    failed = Report(n=-1).dispatch()
    cancelled_itself = Report(n=13).dispatch()
    expired = Report(n=2).with_expiry(5).dispatch()
    waiting = Report(n=3).dispatch_after(60)
    assert kashq.cancel(waiting).outcome == "cancelled"
    q.clock.advance(10)
    q.drain()
    assert _ids(kashq.jobs(state="completed")) == [done]
    assert _ids(kashq.jobs(state="failed")) == [failed]
    assert set(_ids(kashq.jobs(state="cancelled"))) == {cancelled_itself, waiting}
    assert _ids(kashq.jobs(state="expired")) == [expired]
    assert kashq.jobs(state="completed-recently").jobs[0].finished_at is not None


def test_filters_and_cursors_walk_every_queue_once(q):
    mails = [Mail(to=f"u{n}").dispatch() for n in range(5)]
    reports = [Report(n=n).dispatch() for n in range(4)]
    seen = list(every(lambda cursor: kashq.jobs(limit=2, cursor=cursor)))
    assert [job.id for job in seen] == [*reports, *mails]  # queues by name: default, mail
    assert _ids(kashq.jobs(queue="mail", tag="to:u3")) == [mails[3]]
    assert _ids(kashq.jobs(type=Report.__kashq_name__, limit=3)) == reports[:3]
    page = kashq.jobs(type=Report.__kashq_name__, limit=3)
    assert _ids(kashq.jobs(type=Report.__kashq_name__, cursor=page.cursor)) == reports[3:]


def test_bad_arguments_are_one_line_errors(q):
    with pytest.raises(ValueError, match="state must be one of"):
        kashq.jobs(state="sleeping")
    with pytest.raises(ValueError, match="limit must be"):
        kashq.jobs(limit=0)
    with pytest.raises(ValueError, match="not a cursor of this jobs listing"):
        kashq.jobs(cursor="garbage!")


def test_cancelling_by_filter_cancels_only_the_matching_jobs(q):
    mails = [Mail(to=name).dispatch() for name in ("ann", "bob", "ann")]
    report = Report().dispatch()
    answers = q.manager.cancel_where(tag="to:ann")
    assert sorted(a.job_id for a in answers) == sorted([mails[0], mails[2]])
    assert all(a.outcome == "cancelled" for a in answers)
    assert _ids(kashq.jobs(state="ready", queue="mail")) == [mails[1]]
    assert [a.job_id for a in q.manager.cancel_where(queue="default")] == [report]
    with pytest.raises(ValueError, match="needs a queue"):
        q.manager.cancel_where()
