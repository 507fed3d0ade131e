"""Finished OpenTelemetry spans of a test: a tracer provider of its own, kept in memory.

The global tracer provider can be set once per process, so a test never sets it: it
gives its own provider to the queue manager (``QueueManager(tracer_provider=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


class Spans:
    """A provider whose finished spans the test reads, by kind and name."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def finished(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def sent(self) -> list[ReadableSpan]:
        """The producer spans, in the order they ended."""
        return [span for span in self.finished() if span.kind is SpanKind.PRODUCER]

    def processed(self, job_id: str | None = None) -> list[ReadableSpan]:
        """The consumer spans (of job ``job_id``), in the order they ended."""
        return [
            span
            for span in self.finished()
            if span.kind is SpanKind.CONSUMER
            and (job_id is None or (span.attributes or {}).get("messaging.message.id") == job_id)
        ]

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def linked(span: ReadableSpan) -> list[int]:
    """The span ids ``span`` links to."""
    return [link.context.span_id for link in span.links]


def attrs(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})
