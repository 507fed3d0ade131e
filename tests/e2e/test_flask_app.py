"""``examples/flask_app.py`` end to end: werkzeug serves it, ``flask kashq queue:work`` runs
its jobs.

A real POST dispatches a job, a real ``flask --app ... kashq queue:work
--workers=2`` runs it in worker processes that import the app's module on
their own, and a GET reads its result, on the SQLite default and on Redis.
``/metrics`` and the dashboard answer where :class:`~kashq.contrib.flask.KashQ`
mounted them, and Ctrl-C stops the server, whose interpreter then closes
kashq's manager. An app factory in a package off the working directory, with
its jobs imported inside the factory and its settings in ``app.config``, is run
the same way.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.example_apps import get, post, serving, shared_settings
from tests.e2e.test_cli import _clean_env
from tests.support.services import free_port
from tests.support.waiting import eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "flask_app.py"
FLASK = [sys.executable, "-m", "flask"]
# The werkzeug server of `flask run`, with logging on to show kashq's close at exit.
SERVE = (
    "import logging, sys; logging.basicConfig(level=logging.INFO); "
    "sys.path.insert(0, sys.argv[1]); from flask_app import app; app.run(port=int(sys.argv[2]))"
)
CLOSED = "kashq: queue manager closed at exit"


@pytest.fixture(params=["sqlite", "redis"])
def env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The settings the server and the worker share: the SQLite default, or Redis."""
    yield from shared_settings(request.param)


def _work(app: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``flask --app APP kashq queue:work --workers=2`` until the queue is empty."""
    return subprocess.run(
        [*FLASK, "--app", app, "kashq", "queue:work", "--workers=2", "--stop-when-empty"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_request_dispatches_a_job_flask_kashq_runs_it_and_a_request_reads_its_result(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(EXAMPLES), str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert eventually(lambda: serving(base), 30), "the app never answered"
        ids = [post(f"{base}/reports?n={n}")["id"] for n in (100, 10)]
        assert json.loads(get(f"{base}/reports/{ids[0]}")[1])["state"] == "queued"

        worked = _work(str(EXAMPLE), tmp_path, env)
        assert worked.returncode == 0, worked.stdout + worked.stderr
        assert "modules      flask_app" in worked.stdout, worked.stdout
        assert worked.stdout.count("flask_app.SumTo") >= 2, worked.stdout

        results = [json.loads(get(f"{base}/reports/{job_id}")[1]) for job_id in ids]
        assert results == [
            {"state": "completed", "result": 5050},
            {"state": "completed", "result": 55},
        ]
        assert get(f"{base}/reports/{uuid.uuid4()}")[0] == 404

        status, body = get(f"{base}/metrics")
        assert status == 200
        assert b"kashq_queue_size" in body
        assert get(f"{base}/metrics/more")[0] == 404  # exactly the path
        status, body = get(f"{base}/kashq/")
        assert status == 200
        assert b"kashq" in body.lower()
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert output.rstrip().endswith(CLOSED), output  # after the server stopped
    assert "Traceback" not in output, output


FACTORY = {
    "__init__.py": """
        from flask import Flask

        from kashq.contrib.flask import KashQ

        kashq_ext = KashQ(metrics="/metrics")


        def create_app() -> Flask:
            app = Flask(__name__)
            app.config["KASHQ_QUEUE"] = "shop"
            kashq_ext.init_app(app)
            from shop import views  # its jobs come with it, inside the factory

            app.register_blueprint(views.bp)
            return app
    """,
    "views.py": """
        from flask import Blueprint

        from shop.jobs import Receipt

        bp = Blueprint("shop", __name__)


        @bp.post("/receipts")
        def receipt() -> dict[str, str]:
            return {"id": Receipt(total=42).dispatch().id}
    """,
    "jobs.py": """
        from kashq import Job


        class Receipt(Job):
            total: int

            def handle(self) -> str:
                return f"receipt for {self.total}"
    """,
}

DISPATCH = """
from shop import create_app
print(create_app().test_client().post("/receipts").json["id"])
"""
CHECK = """
import sys, kashq
from shop import create_app
create_app()
print(kashq.get_job(sys.argv[1]).result(timeout=10))
"""


def test_an_app_factory_s_settings_and_jobs_reach_the_worker_processes(tmp_path: Path) -> None:
    """``flask --app src/shop`` from elsewhere: the workers find the package, use its
    ``app.config`` queue, and know the job its factory imported."""
    package = tmp_path / "src" / "shop"
    package.mkdir(parents=True)
    for name, text in FACTORY.items():
        (package / name).write_text(textwrap.dedent(text))
    env = _clean_env()
    env_src = {**env, "PYTHONPATH": str(tmp_path / "src")}
    made = subprocess.run(
        [sys.executable, "-c", DISPATCH],
        cwd=tmp_path, env=env_src, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    job_id = made.stdout.strip()

    worked = _work("src/shop", tmp_path, env)  # no PYTHONPATH: flask finds src/shop itself

    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert "queues       shop" in worked.stdout, worked.stdout
    assert "shop.jobs.Receipt" in worked.stdout, worked.stdout
    assert "DONE" in worked.stdout, worked.stdout
    read = subprocess.run(
        [sys.executable, "-c", CHECK, job_id],
        cwd=tmp_path, env=env_src, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert read.stdout.strip() == "receipt for 42", read.stdout + read.stderr
