"""``examples/fastapi_app.py`` end to end: uvicorn serves it, ``kashq queue:work`` runs its jobs.

A real POST dispatches a job (``await job.adispatch()``), a real worker runs it,
and a GET reads its result, on the SQLite default and on Redis. ``/metrics``
and the dashboard answer where :class:`~kashq.contrib.fastapi.KashQ` mounted
them, and SIGTERM stops the server through its lifespan, which ends with
kashq closing its manager (``tests/unit/test_contrib_fastapi.py`` checks that).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.example_apps import get, post, serving, shared_settings
from tests.e2e.test_cli import _kashq_executable
from tests.support.services import free_port
from tests.support.waiting import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "fastapi_app.py"


@pytest.fixture(params=["sqlite", "redis"])
def env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings the server and the worker share: the SQLite default, or Redis."""
    yield from shared_settings(request.param)


def test_a_request_dispatches_a_job_a_worker_runs_it_and_a_request_reads_its_result(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    uvicorn = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)]
    server = subprocess.Popen(
        [*uvicorn, "--port", str(port), "--log-level", "info", "--no-access-log"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert eventually(lambda: serving(base), 30), "the app never answered"
        job_id = post(f"{base}/reports?n=100")["id"]
        assert json.loads(get(f"{base}/reports/{job_id}")[1])["state"] == "queued"

        work = [str(_kashq_executable()), "queue:work", "--import", str(EXAMPLE)]
        worked = subprocess.run(
            [*work, "--stop-when-empty", "--quiet"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert worked.returncode == 0, worked.stdout + worked.stderr

        status, body = get(f"{base}/reports/{job_id}")
        assert (status, json.loads(body)) == (200, {"state": "completed", "result": 5050})
        assert get(f"{base}/reports/{uuid.uuid4()}")[0] == 404

        status, body = get(f"{base}/metrics")
        assert status == 200
        assert b"kashq_queue_size" in body
        status, body = get(f"{base}/kashq/")
        assert status == 200
        assert b"kashq" in body.lower()
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # uvicorn ends a graceful shutdown by raising SIGTERM again: -15, after the lifespan.
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete." in output, output
    assert "Traceback" not in output, output
