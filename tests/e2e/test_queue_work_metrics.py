"""``kashq queue:work --metrics-port``: one /metrics for every worker process, over real HTTP."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from kashq.cli import app as cli_app
from tests.e2e.work_app import App, make_app
from tests.support.services import free_port, port_open

Sample = tuple[str, dict[str, str], float]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    """An app on the SQLite default whose processes make temporary files in ``tmp/``."""
    (tmp_path / "app").mkdir()
    (tmp_path / "tmp").mkdir()
    with make_app(tmp_path / "app", "sqlite") as made:
        made.env["TMPDIR"] = str(tmp_path / "tmp")
        yield made


def scrape(port: int) -> list[Sample]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


def test_queue_work_serves_the_sum_of_every_worker_process(app: App, tmp_path: Path) -> None:
    (app.root / "fail.flag").touch()
    app.dispatch(
        "[j.Record(n=i) for i in range(30)]"
        " + [j.Record(n=-1).delay(3600) for _ in range(2)] + [j.Flaky()]"
    )
    port = free_port()
    worker = app.start_work("--workers", "3", "--metrics-port", str(port), "--quiet")
    try:
        app.wait_for_ledger(30)
        deadline = time.monotonic() + 30
        while True:  # the last outcomes and the third worker's start may trail the ledger,
            # and so may the last acknowledgement (it rides on the worker's next claim)
            samples = scrape(port)
            settled = (
                total(samples, "kashq_jobs_processed_total") == 32
                and total(samples, "kashq_workers") == 3
                and total(samples, "kashq_queue_size", state="failed") == 1
                and total(samples, "kashq_queue_size", state="reserved") == 0
            )
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        directories = [p.name for p in (tmp_path / "tmp").iterdir()]
    finally:
        worker.signal(signal.SIGTERM)
        code = worker.popen.wait(30)
        worker.kill()

    processed = "kashq_jobs_processed_total"
    assert total(samples, processed) == 32, worker.output()  # 30 + Flaky's retry and failure
    assert total(samples, processed, status="completed") == 30
    assert total(samples, processed, status="released", job_type="e2e_jobs.Flaky") == 1
    assert total(samples, processed, status="failed", job_type="e2e_jobs.Flaky") == 1
    assert total(samples, "kashq_job_duration_seconds_count") == 32  # every run of handle()
    assert total(samples, "kashq_job_wait_seconds_count") == 32
    assert total(samples, "kashq_job_duration_seconds_bucket", le="+Inf") == 32
    assert total(samples, "kashq_workers") == 3
    assert total(samples, "kashq_lease_reclaims_total") == 0
    sizes = {
        labels["state"]: value
        for name, labels, value in samples
        if name == "kashq_queue_size" and labels["queue"] == "default"
    }
    assert sizes == {"ready": 0, "delayed": 2, "reserved": 0, "failed": 1}
    assert [name for name in directories if name.startswith("kashq-metrics-")]

    assert code == 0, worker.output()
    assert f"metrics      http://127.0.0.1:{port}/metrics" in worker.output()
    assert list((tmp_path / "tmp").iterdir()) == []  # its directory is removed at exit
    assert not port_open("127.0.0.1", port, 0.5)


def test_metrics_port_in_use_is_a_one_line_error(app: App, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        run = app.kashq("queue:work", "--import", "e2e_jobs", "--metrics-port", str(port))

    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in run.stdout + run.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1", "\u00b2"])
def test_bad_metrics_port_is_a_one_line_usage_error(value: str) -> None:
    result = CliRunner().invoke(cli_app, ["queue:work", f"--metrics-port={value}"])

    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: --metrics-port must be a port number (1-65535), got {value!r}"]


def test_the_scheduler_beside_the_workers_counts_its_dispatches_in_the_same_metrics(
    app: App,
) -> None:
    (app.root / "e2e_schedules.py").write_text(
        "import kashq\nimport e2e_jobs\n\n"
        "kashq.schedule.every(seconds=1).name('tick').dispatch(e2e_jobs.Record(n=0))\n"
    )
    port = free_port()
    worker = app.start_work(
        "--with-scheduler", "--import", "e2e_schedules", "--metrics-port", str(port), "--quiet"
    )
    try:
        app.wait_for_ledger(1, timeout_s=30)
        deadline = time.monotonic() + 15
        while total(samples := scrape(port), "kashq_jobs_dispatched_total") < 1:
            assert time.monotonic() < deadline, "the scheduler's dispatches were never counted"
            time.sleep(0.1)
    finally:
        worker.signal(signal.SIGTERM)
        code = worker.popen.wait(30)
        worker.kill()

    assert total(samples, "kashq_jobs_dispatched_total", job_type="e2e_jobs.Record") >= 1
    assert code == 0, worker.output()
