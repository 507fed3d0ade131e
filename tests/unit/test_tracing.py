"""OpenTelemetry tracing on the memory and sync connections: producer spans at dispatch,
a consumer span per attempt, the links between them, chains and batches; and off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import kashq
from kashq import Job, QueueManager
from kashq.config import load_settings
from kashq.envelope import decode
from kashq.middleware import ReleaseJob
from kashq.testing import FakeClock, drain
from tests.support.spans import Spans, attrs, linked, parent_id, span_id, trace_id

RAN: list[str] = []


class Greet(Job):
    name: str

    def handle(self) -> None:
        RAN.append(self.name)


class Flaky(Job):
    tries = 3
    backoff = 2

    def handle(self) -> None:
        raise ValueError(f"boom {self.attempts()}")


class Nested(Job):
    def handle(self) -> None:
        tracer = kashq.manager().tracing._provider.get_tracer("job")  # type: ignore[union-attr]
        with tracer.start_as_current_span("inside the job"):
            pass


class NotNow:
    def handle(self, job: Job, call_next: Any) -> Any:
        raise ReleaseJob(7)


class Later(Job):
    def middleware(self) -> list[Any]:
        return [NotNow()]

    def handle(self) -> None:
        pass


class Broken(Job):
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("disk full")


def stored_metadata(manager: QueueManager, job_id: str) -> dict[str, str]:
    found = manager.connection().find(job_id)
    assert found is not None
    return decode(found.raw).metadata


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
def manager(spans: Spans) -> Iterator[QueueManager]:
    """The current manager, on the memory connection, tracing to ``spans``."""
    made = QueueManager(
        load_settings(connection="memory"), clock=FakeClock(), tracer_provider=spans.provider
    )
    kashq.configure(made)
    RAN.clear()
    yield made


def test_a_dispatch_is_a_producer_span_whose_context_the_envelope_carries(spans, manager):
    with spans.tracer.start_as_current_span("request") as request:
        handle = Greet(name="ada").dispatch()
    (sent,) = spans.sent()
    assert sent.name == "send default"
    assert parent_id(sent) == request.get_span_context().span_id
    assert attrs(sent) == {
        "messaging.system": "kashq", "messaging.operation.type": "send",
        "messaging.operation.name": "send", "messaging.destination.name": "default",
        "messaging.message.id": handle.id, "kashq.job.type": Greet.__kashq_name__,
    }  # fmt: skip
    carried = stored_metadata(manager, handle.id)
    assert sent.context is not None
    flags = int(sent.context.trace_flags)
    assert carried == {"traceparent": f"00-{trace_id(sent):032x}-{span_id(sent):016x}-{flags:02x}"}


def test_an_attempt_is_a_consumer_span_child_of_the_dispatch_and_linked_to_it(spans, manager):
    with spans.tracer.start_as_current_span("request"):
        handle = Greet(name="ada").dispatch()
    drain(manager=manager)
    (sent,), (processed,) = spans.sent(), spans.processed()
    assert RAN == ["ada"]
    assert processed.name == "process default"
    assert processed.kind is SpanKind.CONSUMER
    assert trace_id(processed) == trace_id(sent)
    assert parent_id(processed) == span_id(sent)
    assert linked(processed) == [span_id(sent)]
    assert attrs(processed) == {
        "messaging.system": "kashq", "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.destination.name": "default",
        "messaging.message.id": handle.id, "kashq.job.type": Greet.__kashq_name__,
        "kashq.job.attempt": 1, "kashq.job.deliveries": 1, "kashq.job.outcome": "completed",
    }  # fmt: skip
    assert processed.status.status_code is StatusCode.UNSET


def test_the_job_runs_with_its_consumer_span_current(spans, manager):
    Nested().dispatch()
    drain(manager=manager)
    (inside,), (processed,) = spans.named("inside the job"), spans.processed()
    assert parent_id(inside) == span_id(processed)


def test_each_attempt_is_a_span_noting_its_error_and_its_retry_delay(spans, manager):
    handle = Flaky().dispatch()
    drain(manager=manager)
    attempts = spans.processed(handle.id)
    assert [attrs(s)["kashq.job.attempt"] for s in attempts] == [1, 2, 3]
    assert [attrs(s)["kashq.job.outcome"] for s in attempts] == ["retried", "retried", "failed"]
    assert [attrs(s).get("kashq.job.retry_delay_s") for s in attempts] == [2.0, 4.0, None]
    for number, span in enumerate(attempts, start=1):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == f"ValueError: boom {number}"
        (event,) = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.message"] == f"boom {number}"
    (sent,) = spans.sent()
    assert {parent_id(s) for s in attempts} == {span_id(sent)}


def test_a_release_by_a_middleware_is_retried_with_its_delay_and_no_error(spans, manager):
    handle = Later().dispatch()
    manager.worker("memory").run_next()
    (processed,) = spans.processed(handle.id)
    assert attrs(processed)["kashq.job.outcome"] == "retried"
    assert attrs(processed)["kashq.job.retry_delay_s"] == 7
    assert (processed.status.status_code, processed.events) == (StatusCode.UNSET, ())


def test_a_job_that_cannot_run_is_a_failed_attempt_recording_why(spans, manager):
    handle = kashq.dispatch("tests.no_such_handler", {})
    drain(manager=manager)
    (processed,) = spans.processed(handle.id)
    assert attrs(processed)["kashq.job.outcome"] == "failed"
    assert processed.status.status_code is StatusCode.ERROR
    assert "tests.no_such_handler" in str(processed.status.description)


def test_dispatch_many_sends_its_jobs_in_one_span_each_attempt_linked_to_it(spans, manager):
    ids = kashq.dispatch_many([Greet(name="a"), Greet(name="b").on_queue("other")])
    drain(manager=manager)
    (sent,) = spans.sent()
    assert sent.name == "send"
    assert attrs(sent)["messaging.batch.message_count"] == 2
    assert "messaging.destination.name" not in attrs(sent)
    for job_id in ids:
        (processed,) = spans.processed(job_id)
        assert (parent_id(processed), linked(processed)) == (span_id(sent), [span_id(sent)])


def test_a_chain_step_is_sent_from_the_step_before_linked_to_the_chain_dispatch(spans, manager):
    head = kashq.chain([Greet(name="one"), Greet(name="two")]).dispatch()
    drain(manager=manager)
    assert RAN == ["one", "two"]
    dispatch, following = spans.sent()
    first = spans.processed(head.id)[0]
    (second,) = [s for s in spans.processed() if s is not first]
    assert attrs(dispatch)["kashq.chain.id"] == head.id
    assert parent_id(following) == span_id(first)  # pushed while the first step ran
    assert linked(following) == [span_id(dispatch)]
    assert (parent_id(second), linked(second)) == (span_id(following), [span_id(following)])
    assert attrs(second)["kashq.chain.id"] == head.id
    assert {trace_id(s) for s in (dispatch, first, following, second)} == {trace_id(dispatch)}


def test_a_chain_catch_callback_is_sent_from_the_failed_step(spans, manager):
    head = kashq.chain([Broken(), Greet(name="never")]).catch(Greet(name="caught")).dispatch()
    drain(manager=manager)
    assert RAN == ["caught"]
    dispatch, catch = spans.sent()
    failed = spans.processed(head.id)[0]
    assert attrs(failed)["kashq.job.outcome"] == "failed"
    assert (parent_id(catch), linked(catch)) == (span_id(failed), [span_id(dispatch)])
    (callback,) = [s for s in spans.processed() if s is not failed]
    assert parent_id(callback) == span_id(catch)
    assert attrs(callback)["kashq.chain.id"] == head.id


def test_a_batch_is_one_span_its_jobs_and_callbacks_children_of_it(spans, manager):
    batch = kashq.batch([Greet(name="a"), Greet(name="b")]).then(Greet(name="then")).dispatch()
    drain(manager=manager)
    assert sorted(RAN) == ["a", "b", "then"]
    (sent,) = spans.sent()
    assert attrs(sent)["kashq.batch.id"] == batch.id
    assert attrs(sent)["messaging.batch.message_count"] == 2
    processed = spans.processed()
    assert len(processed) == 3
    for span in processed:
        assert (parent_id(span), linked(span)) == (span_id(sent), [span_id(sent)])
        assert attrs(span)["kashq.batch.id"] == batch.id


def test_a_batch_in_a_chain_is_sent_from_the_step_that_starts_it(spans, manager):
    kashq.chain([Greet(name="first"), kashq.batch([Greet(name="a"), Greet(name="b")])]).dispatch()
    drain(manager=manager)
    assert sorted(RAN) == ["a", "b", "first"]
    starter = next(
        s for s in spans.processed() if attrs(s)["kashq.job.type"] == "kashq.start_batch"
    )
    (from_starter,) = [s for s in spans.sent() if parent_id(s) == span_id(starter)]
    assert attrs(from_starter)["messaging.batch.message_count"] == 2
    members = [s for s in spans.processed() if parent_id(s) == span_id(from_starter)]
    assert len(members) == 2


def test_the_sync_connection_runs_the_attempt_inside_the_dispatch_span(spans, manager):
    Greet(name="now").on_connection("sync").dispatch()
    (sent,), (processed,) = spans.sent(), spans.processed()
    assert RAN == ["now"]
    assert parent_id(processed) == span_id(sent)


def test_tracing_turned_off_starts_no_span_and_leaves_metadata_alone(spans):
    manager = QueueManager(
        load_settings(connection="memory", tracing=False), tracer_provider=spans.provider
    )
    kashq.configure(manager)
    assert manager.tracing is None
    handle = Greet(name="quiet").dispatch()
    assert stored_metadata(manager, handle.id) == {}
    drain(manager=manager)
    assert (RAN[-1:], spans.finished()) == (["quiet"], ())


def test_with_the_api_but_no_sdk_nothing_is_traced_or_written():
    manager = kashq.configure(connection="memory")  # the global provider: none was set
    assert manager.tracing is not None
    assert manager.tracing.tracer() is None  # so no span is even started
    handle = Greet(name="plain").dispatch()
    assert stored_metadata(manager, handle.id) == {}
    assert drain(manager=manager).completed == 1


NOT_IMPORTABLE = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import kashq
from kashq.testing import drain

class Hello(kashq.Job):
    def handle(self):
        print("ran")

manager = kashq.configure(connection="memory")
handle = Hello().dispatch()
print(manager.tracing, kashq.envelope.decode(manager.connection().find(handle.id).raw).metadata)
print(drain(manager=manager).completed)
print(sorted(m for m in sys.modules if m.startswith(("kashq.tracing", "opentelemetry."))))
"""


def test_without_opentelemetry_importable_jobs_dispatch_and_run_untraced():
    run = subprocess.run(
        [sys.executable, "-c", NOT_IMPORTABLE], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["None {}", "ran", "1", "['kashq.tracing']"]


GLOBAL_PROVIDER_SET_LATER = """
import kashq
from kashq.testing import drain
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

class Hello(kashq.Job):
    def handle(self):
        pass

manager = kashq.configure(connection="memory")
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # after kashq was configured, before its first job
Hello().dispatch()
drain(manager=manager)
print([span.name for span in exporter.get_finished_spans()])
"""


def test_the_global_tracer_provider_is_used_even_when_set_after_kashq_was_configured():
    run = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER_SET_LATER], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["['send default', 'process default']"]
