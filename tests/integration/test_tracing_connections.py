"""The trace goes wherever the envelope goes: dispatched by one manager (a web process),
run by another on the same storage (a worker), on SQLite, Redis, Redis Cluster and the
sharded connection; in a transaction (``using=``) too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import kashq
from kashq import Job, QueueManager
from kashq.config import load_settings
from kashq.drivers.database import DatabaseDriver
from kashq.testing import FakeClock
from tests.integration.test_driver_contract import open_driver, same_storage
from tests.support.managers import connection_name, failed_store_url
from tests.support.spans import Spans, attrs, linked, parent_id, span_id, trace_id

RAN: list[int] = []


class Count(Job):
    n: int

    def handle(self) -> None:
        RAN.append(self.n)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@contextmanager
def web_and_worker(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path, clock: FakeClock
) -> Iterator[tuple[QueueManager, Spans, QueueManager, Spans]]:
    """Two managers on one storage, each tracing to a provider of its own; the first is
    current (it dispatches)."""
    RAN.clear()
    with open_driver(request, kind, clock, tmp_path) as driver:
        name = connection_name(kind)
        settings = load_settings(connection=name, database_url=failed_store_url(driver, tmp_path))
        web_spans, worker_spans = Spans(), Spans()
        web = QueueManager(settings, clock=clock, tracer_provider=web_spans.provider)
        web.add_connection(name, driver)
        worker = QueueManager(settings, clock=clock, tracer_provider=worker_spans.provider)
        worker.add_connection(name, same_storage(driver, clock))
        kashq.configure(web)
        try:
            yield web, web_spans, worker, worker_spans
        finally:
            worker.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis-cluster", "sharded"])
def test_the_worker_continues_the_trace_of_the_dispatch(request, kind, tmp_path, clock):
    with web_and_worker(request, kind, tmp_path, clock) as (_, web_spans, worker, worker_spans):
        with web_spans.tracer.start_as_current_span("POST /orders") as request_span:
            handle = Count(n=1).dispatch()
        worker.worker(stop_when_empty=True).run()
    assert RAN == [1]
    (sent,), (processed,) = web_spans.sent(), worker_spans.processed()
    assert parent_id(sent) == request_span.get_span_context().span_id
    assert trace_id(processed) == trace_id(sent) == request_span.get_span_context().trace_id
    assert (parent_id(processed), linked(processed)) == (span_id(sent), [span_id(sent)])
    assert attrs(processed)["messaging.message.id"] == handle.id
    assert attrs(processed)["kashq.job.outcome"] == "completed"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_chain_goes_on_in_the_worker_s_trace(request, kind, tmp_path, clock):
    with web_and_worker(request, kind, tmp_path, clock) as (_, web_spans, worker, worker_spans):
        kashq.chain([Count(n=1), Count(n=2)]).dispatch()
        worker.worker(stop_when_empty=True).run()
    assert RAN == [1, 2]
    (dispatch,), (following,) = web_spans.sent(), worker_spans.sent()
    first, second = worker_spans.processed()
    assert parent_id(first) == span_id(dispatch)
    assert (parent_id(following), linked(following)) == (span_id(first), [span_id(dispatch)])
    assert parent_id(second) == span_id(following)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_batch_s_jobs_and_callback_are_children_of_its_dispatch(request, kind, tmp_path, clock):
    with web_and_worker(request, kind, tmp_path, clock) as (_, web_spans, worker, worker_spans):
        kashq.batch([Count(n=1), Count(n=2)]).then(Count(n=3)).dispatch()
        worker.worker(stop_when_empty=True).run()
    assert sorted(RAN) == [1, 2, 3]
    (sent,) = web_spans.sent()
    processed = worker_spans.processed()
    assert len(processed) == 3
    assert {(parent_id(span), tuple(linked(span))) for span in processed} == {
        (span_id(sent), (span_id(sent),))
    }


def test_a_job_written_in_the_application_s_transaction_carries_the_trace(request, tmp_path, clock):
    with web_and_worker(request, "sqlite", tmp_path, clock) as (web, web_spans, worker, spans):
        driver = web.connection("database")
        assert isinstance(driver, DatabaseDriver)
        driver.sizes(["default"])  # kashq used once outside a transaction: its tables exist
        engine = create_engine(driver.engine.url)
        with Session(engine) as session:
            handle = Count(n=1).dispatch(using=session)
            session.commit()
        engine.dispose()
        worker.worker(stop_when_empty=True).run()
    assert RAN == [1]
    (sent,), (processed,) = web_spans.sent(), spans.processed()
    assert attrs(sent)["messaging.message.id"] == handle.id
    assert (parent_id(processed), linked(processed)) == (span_id(sent), [span_id(sent)])
