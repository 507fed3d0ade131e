"""kashq's spans, on the OpenTelemetry API: imported by :func:`kashq.tracing.build` only.

Names and attributes follow OpenTelemetry's messaging conventions
(``messaging.system`` is ``kashq``): ``send <queue>`` is a PRODUCER span,
``process <queue>`` a CONSUMER one; kashq's own attributes start with ``kashq.``.
The tracer comes from the provider given, else from the global provider once the
application has set one: until then (the API without an SDK) no span is started, and
the API is asked again at most once a second, so the cost is reading a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context, propagate, trace
from opentelemetry.trace import (
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)

from kashq._version import __version__
from kashq.tracing import UNTRACED, EnvelopeFor, Publishing, attempt_running
from kashq.workflows.batches.callbacks import BATCH_ID as CALLBACK_OF_BATCH
from kashq.workflows.chain import CHAIN_ID as CATCH_OF_CHAIN

if TYPE_CHECKING:
    from kashq.envelope import Envelope
    from kashq.worker.outcome import Outcome

T = TypeVar("T")

SYSTEM = "kashq"
# Attribute names: OpenTelemetry's messaging conventions, then kashq's own.
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
MESSAGE_COUNT = "messaging.batch.message_count"
JOB_TYPE = "kashq.job.type"
ATTEMPT = "kashq.job.attempt"
DELIVERIES = "kashq.job.deliveries"
OUTCOME = "kashq.job.outcome"
RETRY_DELAY = "kashq.job.retry_delay_s"
BATCH_ID = "kashq.batch.id"
CHAIN_ID = "kashq.chain.id"
_SEND = {
    "messaging.system": SYSTEM,
    "messaging.operation.type": "send",
    "messaging.operation.name": "send",
}
_PROCESS = {
    "messaging.system": SYSTEM,
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
}
_UNUSED = (NoOpTracerProvider, ProxyTracerProvider)  # the API's own: no SDK behind them
RECHECK_S = 1.0  # how soon a global tracer provider set later is used


class Tracing:
    """Starts kashq's spans with the tracer of one provider (see the module docstring)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer: Tracer | None = None
        self._recheck_at = 0.0  # monotonic seconds
        if provider is not None:
            self._tracer = provider.get_tracer("kashq", __version__)

    def tracer(self) -> Tracer | None:
        """The tracer, or None while no SDK's provider is set (nothing to trace to)."""
        tracer = self._tracer
        if tracer is None:
            now = time.monotonic()
            if now < self._recheck_at:
                return None
            self._recheck_at = now + RECHECK_S
            provider = trace.get_tracer_provider()
            if isinstance(provider, _UNUSED):
                return None
            tracer = self._tracer = provider.get_tracer("kashq", __version__)  # set once
        return tracer

    def active(self) -> bool:
        """Whether spans are started (an SDK's provider is there)."""
        return self._tracer is not None or self.tracer() is not None

    # -- producers ------------------------------------------------------
    def publishing(self) -> Publishing:
        """A producer span for jobs about to be built and pushed (:data:`UNTRACED` while
        there is no SDK)."""
        tracer = self.tracer()
        return UNTRACED if tracer is None else TracedPublishing(tracer)

    def publish(self, envelopes: Sequence[Envelope], push: Callable[[], T]) -> T:
        """``push()`` the built ``envelopes`` in one producer span whose context they carry."""
        tracer = self.tracer()
        if tracer is None:
            return push()
        with TracedPublishing(tracer) as publishing:
            for envelope in envelopes:
                publishing.stamp(envelope)
            return publishing.send(envelopes, push)

    def forward(self, envelopes: Sequence[Envelope], push: Callable[[], object]) -> None:
        """As :meth:`publish`, for envelopes built earlier (a chain's steps, a batch's jobs):
        the span links to the dispatch whose context they carry, which they then replace."""
        tracer = self.tracer()
        if tracer is None:
            push()
            return
        with TracedPublishing(tracer, _links(envelopes)) as publishing:
            for envelope in envelopes:
                publishing.stamp(envelope)
            publishing.send(envelopes, push)

    # -- consumers ------------------------------------------------------
    def attempt(
        self, env: Envelope, deliveries: int, run: Callable[[AttemptSpan | None], Outcome]
    ) -> Outcome:
        """``run`` one attempt of ``env`` in a consumer span: the child of the context the
        envelope carries, linked to it; current while the job runs, so its own spans
        nest under it. ``run`` is given the span to note an error or a retry on."""
        tracer = self.tracer()
        if tracer is None:
            return run(None)
        parent = propagate.extract(env.metadata)
        sent = trace.get_current_span(parent).get_span_context()
        attributes: dict[str, Any] = {
            **_PROCESS, DESTINATION: env.queue, MESSAGE_ID: env.id, JOB_TYPE: env.type,
            ATTEMPT: env.attempts + 1, DELIVERIES: deliveries,
        }  # fmt: skip
        _workflow(attributes, env)
        span = tracer.start_span(
            f"process {env.queue}", parent, SpanKind.CONSUMER, attributes,
            [Link(sent)] if sent.is_valid else None,
        )  # fmt: skip
        attempt = AttemptSpan(self, span)
        token = context.attach(trace.set_span_in_context(span, parent))
        running = attempt_running.set(attempt)
        try:
            outcome = run(attempt)
            span.set_attribute(OUTCOME, outcome.value)
        except BaseException as exc:  # KeyboardInterrupt; a job's own errors are outcomes
            attempt.raised(exc)
            raise
        finally:
            attempt_running.reset(running)
            context.detach(token)
            span.end()
        return outcome

    def flush(self, timeout_s: float = 5.0) -> None:
        """Export the spans the provider still holds (a worker process ends with
        ``os._exit``: no ``atexit`` hook of the SDK runs)."""
        if self._tracer is None:
            return  # never traced: nothing of ours to export
        provider = self._provider or trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if callable(flush):
            flush(int(timeout_s * 1000))


class TracedPublishing(Publishing):
    """One producer span: the envelopes it sends carry its context (:meth:`stamp`).

    Used as a context manager, which ends the span (recording what was raised).
    """

    def __init__(self, tracer: Tracer, links: Sequence[Link] | None = None) -> None:
        self.span = tracer.start_span("send", kind=SpanKind.PRODUCER, attributes=_SEND, links=links)
        self._context = trace.set_span_in_context(self.span)
        self._carrier: dict[str, str] = {}
        propagate.inject(self._carrier, self._context)

    def stamp(self, envelope: Envelope) -> Envelope:
        """Put this span's W3C trace context in ``envelope``'s metadata."""
        envelope.metadata.update(self._carrier)
        return envelope

    def stamping(self, envelope_for: EnvelopeFor) -> EnvelopeFor:
        """``envelope_for``, stamping every envelope it builds (a chain's or batch's own)."""
        return lambda job: self.stamp(envelope_for(job))

    def send(self, envelopes: Sequence[Envelope], push: Callable[[], T]) -> T:
        """Name the span after ``envelopes``, then ``push()`` with it current."""
        _describe(self.span, envelopes)
        token = context.attach(self._context)
        try:
            return push()
        finally:
            context.detach(token)

    def __enter__(self) -> TracedPublishing:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            _failed(self.span, error)
        self.span.end()


class AttemptSpan:
    """The consumer span of one attempt, for the worker to note how it went."""

    __slots__ = ("span", "tracing")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self.tracing = tracing
        self.span = span

    def raised(self, error: BaseException) -> None:
        """The job raised ``error`` (the attempt failed): recorded, status ERROR."""
        _failed(self.span, error)

    def retry_in(self, delay_s: float) -> None:
        """The job goes back to its queue for ``delay_s`` seconds."""
        self.span.set_attribute(RETRY_DELAY, delay_s)


def _describe(span: Span, envelopes: Sequence[Envelope]) -> None:
    """A producer span's name and attributes, from what it sends."""
    queues = {env.queue for env in envelopes}
    queue = queues.pop() if len(queues) == 1 else None
    span.update_name("send" if queue is None else f"send {queue}")
    attributes: dict[str, Any] = {}
    if queue is not None:
        attributes[DESTINATION] = queue
    if len(envelopes) == 1:
        attributes[MESSAGE_ID] = envelopes[0].id
        attributes[JOB_TYPE] = envelopes[0].type
        _workflow(attributes, envelopes[0])
    else:
        attributes[MESSAGE_COUNT] = len(envelopes)
        batches = {env.batch for env in envelopes}
        if len(batches) == 1 and None not in batches:
            attributes[BATCH_ID] = batches.pop()
    span.set_attributes(attributes)


def _workflow(attributes: dict[str, Any], env: Envelope) -> None:
    """The batch and the chain ``env`` belongs to, or whose callback it is."""
    batch = env.batch or env.metadata.get(CALLBACK_OF_BATCH)
    if batch is not None:
        attributes[BATCH_ID] = batch
    chain = env.chain.id if env.chain is not None else env.metadata.get(CATCH_OF_CHAIN)
    if chain is not None:
        attributes[CHAIN_ID] = chain


def _links(envelopes: Sequence[Envelope]) -> list[Link]:
    """Links to the distinct valid span contexts ``envelopes`` carry."""
    links: dict[int, Link] = {}
    for env in envelopes:
        sent = trace.get_current_span(propagate.extract(env.metadata)).get_span_context()
        if sent.is_valid:
            links.setdefault(sent.span_id, Link(sent))
    return list(links.values())


def _failed(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    lines = str(error).strip().splitlines()
    name = type(error).__name__
    span.set_status(Status(StatusCode.ERROR, f"{name}: {lines[0]}" if lines else name))
