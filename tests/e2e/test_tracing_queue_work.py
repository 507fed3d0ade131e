"""The trace crosses processes: this process dispatches under a request's span, a real
``kashq queue:work`` runs the jobs with an SDK set up by an ``--import``ed module that
writes every finished span to a file, and the worker's spans continue this trace."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import kashq
from kashq import NamedJob, QueueManager
from kashq.config import load_settings
from tests.e2e.test_cli import _clean_env, _kashq_executable
from tests.support.spans import Spans, span_id, trace_id

# An application's OpenTelemetry setup for its workers: a BatchSpanProcessor (spans are
# exported in the background), so the file is complete only if kashq flushes the provider
# before the worker process ends.
OTEL_SETUP = """
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class JsonLines(SpanExporter):
    def export(self, spans):
        with open(os.environ["SPANS_FILE"], "a") as out:
            for span in spans:
                out.write(json.dumps({
                    "name": span.name, "kind": span.kind.name, "pid": os.getpid(),
                    "trace_id": format(span.context.trace_id, "032x"),
                    "span_id": format(span.context.span_id, "016x"),
                    "parent_id": span.parent and format(span.parent.span_id, "016x"),
                    "links": [format(link.context.span_id, "016x") for link in span.links],
                    "attributes": dict(span.attributes),
                    "status": span.status.status_code.name,
                }) + "\\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(JsonLines(), schedule_delay_millis=60_000))
trace.set_tracer_provider(provider)
"""

JOBS = """
from pathlib import Path

import kashq
from opentelemetry import trace


@kashq.handler("traced.charge")
def charge(envelope):
    with trace.get_tracer("app").start_as_current_span("charge the card"):
        with open(Path(__file__).parent / "charged.txt", "a") as out:
            out.write(envelope.id + "\\n")


@kashq.handler("traced.fail")
def fail(envelope):
    raise RuntimeError("card declined")
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "otel_setup.py").write_text(OTEL_SETUP)
    (tmp_path / "traced_jobs.py").write_text(JOBS)
    return tmp_path


def work(app: Path, *imports: str) -> list[dict[str, Any]]:
    """Run ``queue:work`` until the queue is empty; the spans its workers finished."""
    spans_file = app / "spans.jsonl"
    env = {
        **_clean_env(), "KASHQ_DATABASE_URL": f"sqlite:///{app / 'kashq.sqlite'}",
        "KASHQ_MAX_RETRY": "1", "SPANS_FILE": str(spans_file),
    }  # fmt: skip
    args = ["queue:work", "database", "--stop-when-empty", "--workers", "2"]
    for module in imports:
        args += ["--import", module]
    run = subprocess.run(
        [str(_kashq_executable()), *args], cwd=app, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    if not spans_file.exists():
        return []
    return [json.loads(line) for line in spans_file.read_text().splitlines()]


def dispatcher(app: Path, spans: Spans) -> QueueManager:
    settings = load_settings(
        connection="database", database_url=f"sqlite:///{app / 'kashq.sqlite'}"
    )
    return kashq.configure(QueueManager(settings, tracer_provider=spans.provider))


def hex_ids(span: Any) -> tuple[str, str]:
    return format(trace_id(span), "032x"), format(span_id(span), "016x")


def test_the_worker_process_continues_the_trace_of_the_dispatching_process(app):
    spans = Spans()
    dispatcher(app, spans)
    with spans.tracer.start_as_current_span("POST /checkout") as request:
        charged = kashq.dispatch("traced.charge", {"order": 7})
        failed = kashq.dispatch(NamedJob("traced.fail"))
    kashq.manager().close()
    request_trace = format(request.get_span_context().trace_id, "032x")
    sent = {span.attributes["messaging.message.id"]: hex_ids(span) for span in spans.sent()}

    finished = work(app, "otel_setup", "traced_jobs")

    processed = {
        s["attributes"]["messaging.message.id"]: s for s in finished if s["kind"] == "CONSUMER"
    }
    assert set(processed) == {charged.id, failed.id}
    for job_id, span in processed.items():
        assert span["name"] == "process default"
        assert span["trace_id"] == sent[job_id][0] == request_trace
        assert span["parent_id"] == sent[job_id][1]
        assert span["links"] == [sent[job_id][1]]
    assert processed[charged.id]["attributes"]["kashq.job.outcome"] == "completed"
    assert processed[failed.id]["attributes"]["kashq.job.outcome"] == "failed"
    assert processed[failed.id]["status"] == "ERROR"
    (inner,) = [s for s in finished if s["name"] == "charge the card"]
    assert inner["parent_id"] == processed[charged.id]["span_id"]
    assert inner["trace_id"] == request_trace


def test_a_worker_without_an_sdk_runs_the_traced_jobs_and_writes_no_span(app):
    spans = Spans()
    dispatcher(app, spans)
    with spans.tracer.start_as_current_span("POST /checkout"):
        charged = kashq.dispatch("traced.charge", {"order": 8})
    kashq.manager().close()
    assert work(app, "traced_jobs") == []
    assert (app / "charged.txt").read_text().split() == [charged.id]
