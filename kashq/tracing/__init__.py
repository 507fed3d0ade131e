"""OpenTelemetry tracing (the ``otel`` extra): a span per dispatch and per attempt.

This package is light: :mod:`opentelemetry` is imported by :mod:`kashq.tracing.spans`
alone, once, when a queue manager is built (:func:`build`). Without it (the extra
not installed) or with ``KASHQ_TRACING=false``, :func:`build` gives None and the
dispatcher and the worker pay one ``is None`` check per job (with the API but no
SDK, a clock read: see :mod:`kashq.tracing.spans`).

A dispatch is a PRODUCER span whose W3C trace context (``traceparent``,
``tracestate``) goes into each envelope's metadata; each attempt a worker runs is a
CONSUMER span, child of that context and linked to it. Jobs that a running job's
worker pushes on its behalf (a chain's next step, its ``catch`` callbacks, the jobs
of a batch started by a chain) get a producer span of their own inside the
attempt's span: :func:`forward`. The spans and their attributes: ``docs/tracing.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider as TracerProvider

    from kashq.envelope import Envelope
    from kashq.tracing.spans import AttemptSpan, Tracing

__all__ = ["UNTRACED", "Publishing", "attempt_running", "build", "forward"]

T = TypeVar("T")
EnvelopeFor = Callable[[Any], "Envelope"]

log = logging.getLogger(__name__)

attempt_running: ContextVar[AttemptSpan | None] = ContextVar("kashq_attempt_span", default=None)
"""The traced attempt running in this context (None: none, or tracing is off)."""

_missing = False  # opentelemetry was not importable: not tried again


def build(enabled: bool = True, provider: TracerProvider | None = None) -> Tracing | None:
    """What starts kashq's spans, from ``provider`` (None: the global tracer provider,
    once the application sets one); None when tracing is off or the API is missing."""
    global _missing
    if not enabled or _missing:
        return None
    try:
        from kashq.tracing.spans import Tracing
    except ImportError as exc:
        _missing = True
        if not (exc.name or "").startswith("opentelemetry"):  # there, but broken
            log.warning("tracing is off: cannot import opentelemetry (%s)", exc)
        return None
    return Tracing(provider)


def forward(envelopes: Sequence[Envelope], push: Callable[[], object]) -> None:
    """Push ``envelopes``, which a running job's worker sends on its behalf, in a producer
    span of that job's attempt (linked to the dispatch whose context they carry); a
    plain ``push()`` outside a traced attempt."""
    attempt = attempt_running.get()
    if attempt is None:
        push()
    else:
        attempt.tracing.forward(envelopes, push)


class Publishing:
    """How a dispatch of jobs built together (a chain, a batch) is sent: this plain one
    sends them as they are (:data:`UNTRACED`); a traced one
    (:meth:`~kashq.tracing.spans.Tracing.publishing`) in a producer span whose context
    every envelope built with :meth:`stamping` carries. A context manager: the span
    covers building the jobs, and ends on leaving it."""

    def stamping(self, envelope_for: EnvelopeFor) -> EnvelopeFor:
        """``envelope_for``, building envelopes that carry the span's context."""
        return envelope_for

    def send(self, envelopes: Sequence[Envelope], push: Callable[[], T]) -> T:
        """``push()`` the jobs started by ``envelopes`` (the span is named after them)."""
        return push()

    def __enter__(self) -> Publishing:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


UNTRACED = Publishing()
"""Sends jobs with no span: tracing is off."""
