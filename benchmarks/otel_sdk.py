"""The OpenTelemetry SDK of ``benchmarks/tracing.py``'s "SDK" mode, set up on import by
its ``queue:work`` processes (``--import otel_sdk``), as an application's would be: a
tracer provider whose spans go through a BatchSpanProcessor to an exporter that drops
them."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_sdk_exporter import Discard

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(Discard()))
trace.set_tracer_provider(provider)
