"""kashq.metrics without I/O: what workers record, dispatches, helpers, the endpoint, Grafana."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import kashq
from kashq import Job, Outcome, QueueManager, ReleaseJob, Worker, WorkerOptions
from kashq.drivers.base import Reservation
from kashq.drivers.memory import MemoryDriver
from kashq.exceptions import FailedStoreError
from kashq.failed.base import FailedJob
from kashq.failed.memory import MemoryFailedJobStore
from kashq.metrics import (
    DURATION_BUCKETS,
    METRIC_NAMES,
    DefaultMetrics,
    Metrics,
    MetricsEndpoint,
    job_completed,
    job_failed,
    observe_job_duration,
)
from kashq.testing import FakeClock

DASHBOARD = Path(__file__).parents[2] / "examples" / "grafana" / "kashq-dashboard.json"
PROCESSED = "kashq_jobs_processed_total"


class Quick(Job):
    def handle(self) -> None:
        pass


class Breaks(Job):
    tries = 2
    backoff = 0

    def handle(self) -> None:
        raise RuntimeError("broken")


class PutsBack(Job):
    def handle(self) -> None:
        raise ReleaseJob(5, reason="rate limited")


class FlakyStore(MemoryFailedJobStore):
    """A failed-job store that can be made unreachable, like a database that is down."""

    down = False

    def log(self, job: FailedJob) -> FailedJob:
        if self.down:
            raise FailedStoreError("connection refused")
        return super().log(job)


class Harness:
    """A worker on a memory driver and a fake clock, recording into a fresh registry."""

    def __init__(
        self, store: MemoryFailedJobStore | None = None, options: WorkerOptions | None = None
    ) -> None:
        self.clock = FakeClock()
        self.driver = MemoryDriver(clock=self.clock)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(registry=self.registry)
        self.worker = Worker(
            self.driver, store or MemoryFailedJobStore(), options, clock=self.clock
        )
        self.metrics.attach(self.worker)

    def push(self, job: Job, *, delay_s: float = 0.0) -> str:
        env = job.to_envelope(default_queue="default", now=self.clock.time())
        env.available_at += delay_s
        self.driver.push(env)
        return env.type

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


def _processed(h: Harness, job_type: str, status: str) -> float:
    return h.value(PROCESSED, queue="default", job_type=job_type, status=status)


# --------------------------------------------------------------------------- the worker


def test_completed_job_counts_as_processed_with_its_duration_and_wait() -> None:
    h = Harness()
    job_type = h.push(Quick())
    h.clock.advance(4)

    assert h.worker.run_next() is Outcome.COMPLETED

    labels = {"queue": "default", "job_type": job_type}
    assert _processed(h, job_type, "completed") == 1
    assert _processed(h, job_type, "failed") == 0
    assert h.value("kashq_job_duration_seconds_count", **labels) == 1
    assert h.value("kashq_job_wait_seconds_count", **labels) == 1
    assert h.value("kashq_job_wait_seconds_sum", **labels) == pytest.approx(4)
    assert h.value("kashq_job_wait_seconds_bucket", **labels, le="2.5") == 0
    assert h.value("kashq_job_wait_seconds_bucket", **labels, le="5.0") == 1


def test_failing_job_counts_a_release_per_retry_and_one_failure() -> None:
    h = Harness()
    job_type = h.push(Breaks())

    assert h.worker.run_next() is Outcome.RETRIED
    assert h.worker.run_next() is Outcome.FAILED

    assert _processed(h, job_type, "released") == 1
    assert _processed(h, job_type, "failed") == 1
    assert _processed(h, job_type, "completed") == 0
    labels = {"queue": "default", "job_type": job_type}
    assert h.value("kashq_job_duration_seconds_count", **labels) == 2  # both runs of handle()


def test_wait_of_a_retried_or_delayed_job_starts_when_it_became_available() -> None:
    h = Harness()
    job_type = h.push(Quick(), delay_s=10)
    h.clock.advance(13)

    h.worker.run_next()

    labels = {"queue": "default", "job_type": job_type}
    assert h.value("kashq_job_wait_seconds_sum", **labels) == pytest.approx(3)


def test_middleware_release_counts_as_released() -> None:
    h = Harness()
    job_type = h.push(PutsBack())

    assert h.worker.run_next() is Outcome.RETRIED

    assert _processed(h, job_type, "released") == 1


def test_parked_failure_counts_once_when_it_is_recorded() -> None:
    store = FlakyStore()
    h = Harness(store)
    job_type = h.push(Breaks().with_max_retries(1))
    store.down = True
    assert h.worker.run_next() is Outcome.PARKED
    assert _processed(h, job_type, "failed") == 0

    store.down = False
    h.clock.advance(3600)
    assert h.worker.run_next() is Outcome.FAILED

    assert _processed(h, job_type, "failed") == 1


def test_undecodable_job_counts_as_failed() -> None:
    h = Harness()
    garbage = Reservation(id="raw-1", queue="default", raw="{not json", deliveries=1, token="t")

    assert h.worker.process(garbage) is Outcome.FAILED

    assert h.value(PROCESSED, queue="default", job_type="(undecodable)", status="failed") == 1


def test_job_handed_out_again_after_its_worker_vanished_is_a_lease_reclaim() -> None:
    h = Harness()
    h.push(Quick())
    assert h.driver.reserve(["default"], lease_s=30) is not None  # its worker vanishes
    h.clock.advance(31)

    assert h.worker.run_next() is Outcome.COMPLETED
    h.push(Quick())
    assert h.worker.run_next() is Outcome.COMPLETED

    assert h.value("kashq_lease_reclaims_total", queue="default") == 1


def test_workers_gauge_counts_running_threads() -> None:
    h = Harness(options=WorkerOptions(sleep_s=0.05))
    h.worker.start(3)
    try:
        assert h.value("kashq_workers") == 3
    finally:
        h.worker.stop(10)

    assert h.value("kashq_workers") == 0


def test_worker_process_counts_only_in_multiprocess_mode() -> None:
    metrics = Metrics(registry=CollectorRegistry())

    with metrics.worker_process():
        assert metrics.registry.get_sample_value("kashq_workers") == 0  # no attached workers


def test_labelled_children_are_built_once_per_queue_and_job_type() -> None:
    h = Harness()
    for _ in range(3):
        h.push(Quick())
        h.worker.run_next()

    assert len(h.metrics._children) == 1


# --------------------------------------------------------------------------- dispatching


def test_dispatched_counts_each_queue_and_job_type() -> None:
    metrics = Metrics(registry=CollectorRegistry())
    now = time.time()
    envelopes = [Quick().to_envelope(default_queue=queue, now=now) for queue in ("a", "a", "b")] + [
        Breaks().to_envelope(default_queue="a", now=now)
    ]

    metrics.dispatched(envelopes)
    metrics.dispatched(envelopes[:1])

    def count(queue: str, job: type[Job]) -> float | None:
        labels = {"queue": queue, "job_type": job().type_name}
        return metrics.registry.get_sample_value("kashq_jobs_dispatched_total", labels)

    assert count("a", Quick) == 3
    assert count("b", Quick) == 1
    assert count("a", Breaks) == 1


def _default(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_queue_manager_dispatch_and_dispatch_many_count_in_default_metrics() -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    manager = QueueManager(kashq.load_settings(connection="memory", queue=queue))
    try:
        manager.dispatch(Quick())
        manager.dispatch_many([Quick(), Quick()])
    finally:
        manager.close()

    assert _default("kashq_jobs_dispatched_total", queue=queue, job_type=Quick().type_name) == 3


def test_queue_manager_workers_record_into_default_metrics() -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    manager = QueueManager(kashq.load_settings(connection="memory", queue=queue, events=False))
    try:
        manager.dispatch(Quick())
        worker = manager.worker()
        assert worker.run_next() is Outcome.COMPLETED
    finally:
        manager.close()

    assert _default(PROCESSED, queue=queue, job_type=Quick().type_name, status="completed") == 1


# --------------------------------------------------------------------------- by hand


def test_helpers_record_with_default_labels() -> None:
    labels = {"queue": "default", "job_type": "manual"}
    before = {
        status: _default(PROCESSED, **labels, status=status) for status in ("completed", "failed")
    }
    runs = _default("kashq_job_duration_seconds_count", **labels)

    start = time.perf_counter()
    took_s = observe_job_duration(start)
    job_completed()
    job_failed()

    assert took_s >= 0
    assert _default("kashq_job_duration_seconds_count", **labels) == runs + 1
    assert _default(PROCESSED, **labels, status="completed") == before["completed"] + 1
    assert _default(PROCESSED, **labels, status="failed") == before["failed"] + 1


def test_helper_methods_take_queue_and_job_type() -> None:
    metrics = Metrics(registry=CollectorRegistry())

    metrics.observe_job_duration(time.perf_counter() - 0.2, queue="mail", job_type="send")
    metrics.job_completed(queue="mail", job_type="send")

    labels = {"queue": "mail", "job_type": "send"}
    total = metrics.registry.get_sample_value("kashq_job_duration_seconds_sum", labels)
    assert total is not None and 0.2 <= total < 5
    labels["status"] = "completed"
    assert metrics.registry.get_sample_value(PROCESSED, labels) == 1


def test_duration_buckets_span_a_millisecond_to_minutes() -> None:
    assert DURATION_BUCKETS[0] == 0.001
    assert DURATION_BUCKETS[-1] >= 300
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)


# --------------------------------------------------------------------------- exported names


def _exported(metrics: Metrics) -> set[str]:
    """Metric names as Prometheus sees them (histogram families without suffixes).

    prometheus-client's ``*_created`` series (when each series started) are left out.
    """
    names = set()
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                names.add(family.name if family.type == "histogram" else sample.name)
    return names


def test_metric_names_lists_everything_exported() -> None:
    h = Harness()
    h.push(Breaks())
    h.worker.run_next()
    h.metrics.dispatched([Quick().to_envelope(default_queue="default", now=0.0)])
    h.metrics.collect_queue_sizes(h.driver, MemoryFailedJobStore())

    assert _exported(h.metrics) == METRIC_NAMES


# --------------------------------------------------------------------------- the endpoint


@pytest.fixture
def endpoint() -> Iterator[MetricsEndpoint]:
    metrics = Metrics(registry=CollectorRegistry())
    metrics.job_completed(queue="mail", job_type="send")
    yield metrics.handler()


def _completed(body: bytes) -> float:
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == PROCESSED and sample.labels.get("status") == "completed":
                return sample.value
    raise AssertionError(body)


def test_endpoint_is_a_wsgi_application(endpoint: MetricsEndpoint) -> None:
    answers: list[tuple[str, list[tuple[str, str]]]] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}

    body = b"".join(endpoint(environ, lambda status, headers: answers.append((status, headers))))

    assert answers[0][0] == "200 OK"
    assert dict(answers[0][1])["Content-Type"].startswith("text/plain")
    assert _completed(body) == 1


def _asgi(endpoint: Any, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(endpoint(scope, receive, send))
    return sent


def test_endpoint_is_an_asgi_application(endpoint: MetricsEndpoint) -> None:
    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": []}

    start, body = _asgi(endpoint, scope, [{"type": "http.request", "body": b""}])

    assert start["status"] == 200
    assert dict(start["headers"])[b"content-type"].startswith(b"text/plain")
    assert _completed(body["body"]) == 1


def test_asgi_endpoint_answers_openmetrics_when_asked(endpoint: MetricsEndpoint) -> None:
    accept = (b"accept", b"application/openmetrics-text; version=1.0.0")
    scope = {"type": "http", "method": "GET", "headers": [accept]}

    start, body = _asgi(endpoint.asgi, scope, [])

    assert dict(start["headers"])[b"content-type"].startswith(b"application/openmetrics-text")
    assert body["body"].endswith(b"# EOF\n")


def test_asgi_endpoint_acknowledges_lifespan_and_refuses_posts(endpoint: MetricsEndpoint) -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = _asgi(endpoint, {"type": "lifespan"}, incoming)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    start, _ = _asgi(endpoint, {"type": "http", "method": "POST", "headers": []}, [])
    assert start["status"] == 405


def test_endpoint_called_with_other_arities_is_a_type_error(endpoint: MetricsEndpoint) -> None:
    with pytest.raises(TypeError, match="WSGI app"):
        endpoint({})


def test_default_metrics_handler_serves_the_global_registry() -> None:
    job_completed(queue="handler-test")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}

    body = b"".join(DefaultMetrics.handler()(environ, lambda status, headers: None))

    assert b'queue="handler-test"' in body


# --------------------------------------------------------------------------- Grafana

_PROMQL_WORDS = {
    "sum", "rate", "increase", "histogram_quantile", "by", "without", "on", "ignoring",
    "and", "or", "unless", "clamp_min", "avg", "max", "min", "count", "label_values",
}  # fmt: skip
_LABELS = {"queue", "job_type", "status", "state", "le"}


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def _metric_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) in a PromQL expression, roughly parsed."""
    labels: set[str] = set()
    text = re.sub(r'"[^"]*"', '""', expr)  # string literals
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # matchers and ranges
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text):
        labels.update(name.strip() for name in grouping.split(",") if name.strip())
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", text)
    text = re.sub(r",\s*([A-Za-z_]\w*)\s*\)", ")", text)  # label_values(metric, label)
    names = set(re.findall(r"\b([A-Za-z_:][\w:]*)\b(?!\s*\()", text)) - _PROMQL_WORDS
    return names, labels


def test_grafana_dashboard_queries_only_metrics_kashq_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set(METRIC_NAMES)
    for histogram in ("kashq_job_duration_seconds", "kashq_job_wait_seconds"):
        exported |= {f"{histogram}_bucket", f"{histogram}_sum", f"{histogram}_count"}

    queries = _queries(dashboard)
    used: set[str] = set()
    for expr in queries:
        names, labels = _metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
        assert labels <= _LABELS, (expr, labels - _LABELS)
        used |= names

    # Every metric the issue asks to chart has a panel.
    for name in METRIC_NAMES - {"kashq_job_duration_seconds", "kashq_job_wait_seconds"}:
        assert name in used, name
    assert {"kashq_job_duration_seconds_bucket", "kashq_job_wait_seconds_bucket"} <= used


def test_grafana_dashboard_uses_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": f"${{{source['name']}}}"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 8
    assert all(p["datasource"] == reference for p in panels)
    assert all(t["datasource"] == reference for p in panels for t in p["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
