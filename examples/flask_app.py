"""Flask and kashq: a request dispatches a job, a worker runs it, the client reads its result.

    pip install flask 'kashq[dashboard]'
    flask --app examples/flask_app.py run --port 8000
    flask --app examples/flask_app.py kashq queue:work

    curl -X POST 'localhost:8000/reports?n=100'    # {"id": "..."}
    curl localhost:8000/reports/<id>               # {"state": "completed", "result": 5050}

The app and the worker share kashq's settings: the ``KASHQ_*`` keys of
``app.config`` (none here), then the environment and ``kashq.toml`` (here the
default connection: ``kashq.sqlite`` in the working directory;
``KASHQ_CONNECTION=redis`` and the rest work the same). ``flask kashq
queue:work`` imports this module in its workers, so they know ``SumTo``.
``/metrics`` serves Prometheus text and ``/kashq`` the dashboard, which,
unguarded as here, answers loopback addresses only.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request

import kashq
from kashq import Job, JobNotFound
from kashq.contrib.flask import KashQ


class SumTo(Job):
    """Adds 0..n up: the slow report a request should not wait for."""

    n: int

    def handle(self) -> int:
        return sum(range(self.n + 1))


app = Flask(__name__)
KashQ(app, metrics="/metrics", dashboard="/kashq")


@app.post("/reports")
def start_report() -> dict[str, str]:
    handle = SumTo(n=request.args.get("n", type=int, default=0)).dispatch()
    assert handle is not None  # SumTo is not unique: every dispatch queues a job
    return {"id": handle.id}


@app.get("/reports/<job_id>")
def report(job_id: str) -> dict[str, Any]:
    job = kashq.get_job(job_id)
    try:
        status = job.status()
    except JobNotFound:
        abort(404, f"no job {job_id}")
    body: dict[str, Any] = {"state": status.state}
    if status.state == "completed":
        body["result"] = job.result()
    return body
