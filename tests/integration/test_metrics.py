"""kashq.metrics against real things: HTTP servers and frameworks, Redis and SQL, many processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from kashq import Job
from kashq.exceptions import ConfigError
from kashq.failed.base import FailedJob, utc_from_timestamp
from kashq.failed.database import DatabaseFailedJobStore
from kashq.failed.memory import MemoryFailedJobStore
from kashq.metrics import Metrics, QueueSizeCollector
from kashq.metrics.multiprocess import SupervisorMetrics
from tests.support.databases import database
from tests.support.http import uvicorn_serving, wsgi_serving
from tests.support.redis import redis_driver, sharded_driver
from tests.support.services import RedisServer, free_port, port_open

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Task(Job):
    def handle(self) -> None:
        pass


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """WSGI ``app`` on a real loopback HTTP server; yields its /metrics URL."""
    with wsgi_serving(app) as base:
        yield f"{base}/metrics"


@contextmanager
def serving_asgi(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """ASGI ``app`` on uvicorn in a thread, on a free loopback port; yields its /metrics URL."""
    with uvicorn_serving(app, lifespan=lifespan) as base:
        yield f"{base}/metrics"


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sizes_of(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["queue"], dict(labels)["state"]): value
        for (name, labels), value in samples.items()
        if name == "kashq_queue_size"
    }


def _failed_job(queue: str) -> FailedJob:
    return FailedJob(
        uuid=os.urandom(8).hex(), connection="redis", queue=queue, job_type="t", payload="{}",
        error="boom", exception="boom", attempts=1, failed_at=utc_from_timestamp(time.time()),
    )  # fmt: skip


# --------------------------------------------------------------------------- frameworks

_SENT = ("kashq_jobs_processed_total", frozenset({("queue", "mail"), ("job_type", "send"),
         ("status", "completed")}))  # fmt: skip


def _metrics_with_one_job() -> Metrics:
    metrics = Metrics(registry=CollectorRegistry())
    metrics.job_completed(queue="mail", job_type="send")
    return metrics


def test_handler_mounts_in_starlette_at_exactly_metrics() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    app = Starlette()
    app.add_route("/", lambda request: PlainTextResponse("home"))
    app.add_route("/metrics", _metrics_with_one_job().handler())

    with serving_asgi(app) as url:
        assert scrape(url)[_SENT] == 1
        with urllib.request.urlopen(url.removesuffix("metrics"), timeout=10) as home:
            assert home.read() == b"home"


def test_handler_mounts_in_flask_with_werkzeug_dispatcher_middleware() -> None:
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    app = Flask(__name__)
    app.add_url_rule("/", "home", lambda: "home")
    handler = _metrics_with_one_job().handler()
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": handler})  # type: ignore[method-assign]

    with serving(app) as url:
        assert scrape(url)[_SENT] == 1
        with urllib.request.urlopen(url.removesuffix("metrics"), timeout=10) as home:
            assert home.read() == b"home"


def test_asgi_attribute_runs_as_uvicorn_top_level_app_with_lifespan() -> None:
    with serving_asgi(_metrics_with_one_job().handler().asgi, lifespan="on") as url:
        assert scrape(url)[_SENT] == 1


# --------------------------------------------------------------------------- queue sizes


@pytest.mark.parametrize("kind", ["redis", "sharded"])
def test_queue_sizes_come_from_redis_and_the_failed_jobs_table_at_scrape_time(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    metrics = Metrics(registry=CollectorRegistry())
    queue_driver = (
        sharded_driver(request.getfixturevalue("redis_shards"), strategy="round_robin")
        if kind == "sharded"
        else redis_driver()
    )
    with queue_driver as driver, database("sqlite", tmp_path, migrated=True) as url:
        store = DatabaseFailedJobStore(url)
        try:
            now = time.time()
            envelopes = [Task().to_envelope(default_queue="work", now=now) for _ in range(4)]
            envelopes[3].available_at = now + 3600
            driver.push_many(envelopes)
            assert driver.reserve(["work"], lease_s=30) is not None
            store.log(_failed_job("work"))
            store.log(_failed_job("idle"))
            metrics.collect_queue_sizes(driver, store, queues=["idle"])

            with serving(metrics.handler()) as metrics_url:
                first = sizes_of(scrape(metrics_url))
                driver.push(Task().to_envelope(default_queue="work", now=now))
                second = sizes_of(scrape(metrics_url))
        finally:
            store.close()

    assert first == {
        ("idle", "ready"): 0, ("idle", "delayed"): 0, ("idle", "reserved"): 0,
        ("idle", "failed"): 1,
        ("work", "ready"): 2, ("work", "delayed"): 1, ("work", "reserved"): 1,
        ("work", "failed"): 1,
    }  # fmt: skip
    assert second[("work", "ready")] == 3  # read again at each scrape


def test_a_driver_that_is_down_costs_its_queue_sizes_not_the_scrape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kashq.drivers.redis import RedisDriver

    server = RedisServer(tmp_path).start()
    driver = RedisDriver(server.url, prefix="metrics-test")
    metrics = Metrics(registry=CollectorRegistry())
    metrics.collect_queue_sizes(driver, MemoryFailedJobStore(), queues=["default"])
    metrics.job_completed()
    caplog.set_level(logging.WARNING, logger="kashq.metrics")
    try:
        with serving(metrics.handler()) as url:
            assert sizes_of(scrape(url))[("default", "ready")] == 0
            server.kill()
            down = [scrape(url), scrape(url)]
            server.start()
            back = scrape(url)
    finally:
        server.kill()
        driver.close()

    for samples in down:
        assert sizes_of(samples) == {("default", "failed"): 0}  # the store still answers
        assert any(name == "kashq_jobs_processed_total" for name, _ in samples)
    assert sizes_of(back)[("default", "ready")] == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "kashq.metrics.sizes"]
    assert len(warnings) == 2, warnings  # once when it went down, once when it came back
    assert "unreachable" in warnings[0]
    assert "reachable again" in warnings[1]


# --------------------------------------------------------------------------- many processes

_CHILD = """
import sys
from kashq.metrics import DefaultMetrics, job_completed
with DefaultMetrics.worker_process():
    job_completed(queue="mp")
    job_completed(queue="mp")
    print("ready", flush=True)
    sys.stdin.readline()
"""

_READER = """
from kashq.metrics import DefaultMetrics, job_failed
job_failed(queue="mp")
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}
print(b"".join(DefaultMetrics.handler()(environ, lambda status, headers: None)).decode())
"""


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _start_child(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD], env=env, cwd=cwd, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip


def test_supervisor_metrics_sum_worker_processes_and_forget_dead_ones(tmp_path: Path) -> None:
    server = SupervisorMetrics(QueueSizeCollector(), port=free_port())
    env = {**os.environ, **server.environment()}
    children = [_start_child(env, tmp_path) for _ in range(2)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        completed = {"queue": "mp", "job_type": "manual", "status": "completed"}
        running = scrape(server.url)
        assert _value(running, "kashq_workers") == 2
        assert _value(running, "kashq_jobs_processed_total", **completed) == 4

        children[0].send_signal(signal.SIGKILL)  # dies without a word: its gauge file stays
        children[0].wait(10)
        assert _value(scrape(server.url), "kashq_workers") == 2
        server.exited(children[0].pid)
        after = scrape(server.url)
        assert _value(after, "kashq_workers") == 1
        assert _value(after, "kashq_jobs_processed_total", **completed) == 4  # counters stay

        # Metrics.handler() in a process of its own sums the same directory.
        reader = subprocess.run(
            [sys.executable, "-c", _READER], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert (
            'kashq_jobs_processed_total{job_type="manual",queue="mp",status="completed"} 4.0'
            in (reader.stdout)
        )
        assert "kashq_workers 1.0" in reader.stdout
    finally:
        for child in children:
            if child.poll() is None:
                assert child.stdin is not None
                child.stdin.close()
                child.wait(10)
        server.close()

    assert not Path(server.directory).exists()
    assert not port_open("127.0.0.1", server.port, 0.5)


def test_port_in_use_or_unknown_host_is_a_one_line_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}: Address already in use"):
            SupervisorMetrics(QueueSizeCollector(), port=port)
    with pytest.raises(ConfigError, match=r"cannot serve metrics on no-such-host\.invalid"):
        SupervisorMetrics(QueueSizeCollector(), host="no-such-host.invalid", port=free_port())

    assert list(tmp_path.iterdir()) == []  # no directory left behind
