"""A process that only dispatches loads neither the worker nor prometheus-client,
and ``kashq_jobs_dispatched_total`` still counts every dispatch once Prometheus is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

JOBS = """
    import json
    import sys

    import kashq

    class Report(kashq.Job):
        n: int = 0

        def handle(self) -> None:
            pass

    class Nightly(Report):
        unique_for = 60

    def loaded():
        names = ("kashq.worker.worker", "prometheus_client", "kashq.metrics")
        return {name: name in sys.modules for name in names}

    def dispatched(queue):
        from kashq.metrics import DefaultMetrics

        labels = {"queue": queue, "job_type": Report().type_name}
        value = DefaultMetrics.registry.get_sample_value("kashq_jobs_dispatched_total", labels)
        return value or 0.0

    kashq.configure(connection="memory")
"""


def run(code: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` after :data:`JOBS` in a fresh interpreter; what it printed last, as JSON."""
    environ = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"} | (
        env or {}
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(JOBS) + textwrap.dedent(code)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_dispatching_on_a_memory_connection_loads_neither_the_worker_nor_prometheus() -> None:
    loaded = run("""
        Report(n=1).dispatch()
        Nightly(n=1).dispatch()
        kashq.dispatch_many([Report(n=2), Nightly(n=2)])
        print(json.dumps(loaded()))
    """)

    assert loaded == {
        "kashq.worker.worker": False,
        "prometheus_client": False,
        "kashq.metrics": False,
    }


def test_a_process_using_prometheus_counts_each_dispatch_as_it_happens() -> None:
    counts = run("""
        import prometheus_client

        Report(n=1).dispatch()
        metrics_loaded = loaded()["kashq.metrics"]
        kashq.dispatch_many([Report(n=2), Report(n=3).on_queue("mail")])
        first = dispatched("default"), dispatched("mail")
        Report(n=4).dispatch()
        print(json.dumps([metrics_loaded, *first, dispatched("default")]))
    """)

    assert counts == [True, 2.0, 1.0, 3.0]


def test_dispatches_made_before_kashq_metrics_loads_are_counted_when_it_loads() -> None:
    counts = run("""
        Report(n=1).dispatch()
        kashq.dispatch_many([Report(n=2), Report(n=3).on_queue("mail"), Nightly(n=1)])
        before = loaded()["prometheus_client"]
        import kashq.metrics

        first = dispatched("default"), dispatched("mail")
        Report(n=4).dispatch()
        print(json.dumps([before, *first, dispatched("default")]))
    """)

    assert counts == [False, 2.0, 1.0, 3.0]


def test_a_process_in_prometheus_multiprocess_mode_counts_into_its_files(tmp_path: Path) -> None:
    counts = run(
        """
        Report(n=1).dispatch()
        metrics_loaded = loaded()["kashq.metrics"]
        Report(n=2).dispatch()
        from kashq.metrics.multiprocess import multiprocess_registry

        labels = {"queue": "default", "job_type": Report().type_name}
        summed = multiprocess_registry(None).get_sample_value(
            "kashq_jobs_dispatched_total", labels
        )
        print(json.dumps([metrics_loaded, summed]))
        """,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )

    assert counts == [True, 2.0]


def test_the_sync_connection_loads_the_worker_to_run_its_jobs_inline() -> None:
    loaded = run("""
        kashq.configure(connection="sync")
        Report(n=1).dispatch()
        print(json.dumps(loaded()))
    """)

    assert loaded["kashq.worker.worker"] is True
