"""FastAPI and kashq: a request dispatches a job, a worker runs it, the client reads its result.

    pip install fastapi uvicorn 'kashq[dashboard]'
    uvicorn fastapi_app:app --app-dir examples --port 8000
    kashq queue:work --import examples/fastapi_app.py

    curl -X POST 'localhost:8000/reports?n=100'    # {"id": "..."}
    curl localhost:8000/reports/<id>               # {"state": "completed", "result": 5050}

The app and the worker share kashq's settings (here the default connection:
``kashq.sqlite`` in the working directory; ``KASHQ_CONNECTION=redis`` and the
rest work the same). ``/metrics`` serves Prometheus text and ``/kashq`` the
dashboard, which, unguarded as here, answers loopback addresses only.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException

import kashq
from kashq import Job, JobNotFound
from kashq.contrib.fastapi import KashQ


class SumTo(Job):
    """Adds 0..n up: the slow report a request should not wait for."""

    n: int

    def handle(self) -> int:
        return sum(range(self.n + 1))


app = FastAPI()
KashQ(app, metrics="/metrics", dashboard="/kashq")


@app.post("/reports")
async def start_report(n: int) -> dict[str, str]:
    handle = await SumTo(n=n).adispatch()
    assert handle is not None  # SumTo is not unique: every dispatch queues a job
    return {"id": handle.id}


@app.get("/reports/{job_id}")
async def report(job_id: str) -> dict[str, Any]:
    job = kashq.get_job(job_id)
    try:
        status = await job.astatus()
    except JobNotFound:
        raise HTTPException(status_code=404, detail=f"no job {job_id}") from None
    body: dict[str, Any] = {"state": status.state}
    if status.state == "completed":
        body["result"] = await job.aresult()
    return body
