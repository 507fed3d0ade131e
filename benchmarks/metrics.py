"""What recording metrics costs per job: the worker listener and the dispatch counter.

    python benchmarks/metrics.py [--jobs N]

Times :meth:`kashq.metrics.Metrics.listener` on the three steps a completed job
goes through (started, ran, completed) and :meth:`~kashq.metrics.Metrics.dispatched`
for single dispatches and batches of 1,000, against a listener that does
nothing. Twice: in memory (one process) and in prometheus-client's
multiprocess mode (values in mmap'd files, as under ``queue:work
--metrics-port``; measured in a child process started with
``PROMETHEUS_MULTIPROC_DIR``). Then the drain rate of one worker thread on the
memory driver with a no-op listener and with the metrics listener. Medians
of 5 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from prometheus_client import CollectorRegistry

from kashq import Job, MemoryDriver, MemoryFailedJobStore, Worker, WorkerOptions
from kashq.drivers.base import Reservation
from kashq.envelope import Envelope, new_job_id
from kashq.jobevents import EventKind, JobEvent
from kashq.metrics import Metrics

RUNS = 5


class Noop(Job):
    def handle(self) -> None:
        pass


def _events(n_types: int) -> list[tuple[JobEvent, JobEvent, JobEvent]]:
    """The started/ran/completed events of jobs spread over ``n_types`` job types."""
    now = time.time()
    jobs = []
    for i in range(n_types):
        env = Envelope(new_job_id(), f"app.jobs.Job{i}", "default", {}, now, now)
        res = Reservation(env.id, "default", "", 1, "t")
        jobs.append(
            (
                JobEvent(EventKind.STARTED, res, env, env.type, env.queue, 1, now + 0.002),
                JobEvent(EventKind.RAN, res, env, env.type, env.queue, 1, now, duration_s=0.003),
                JobEvent(EventKind.COMPLETED, res, env, env.type, env.queue, 1, now),
            )
        )
    return jobs


def listener_ns(n: int) -> dict[str, float]:
    """Nanoseconds per job and per dispatched envelope, medians of RUNS."""
    metrics = Metrics(registry=CollectorRegistry())
    jobs = _events(10)
    steps = [jobs[i % len(jobs)] for i in range(n)]
    envelopes = [step[0].envelope for step in steps]
    assert all(env is not None for env in envelopes)

    def per_job(listener: object) -> float:
        call = listener  # a local: no attribute lookups in the loop
        started = time.perf_counter_ns()
        for started_ev, ran, completed in steps:
            call(started_ev)  # type: ignore[operator]
            call(ran)  # type: ignore[operator]
            call(completed)  # type: ignore[operator]
        return (time.perf_counter_ns() - started) / n

    def nothing(event: JobEvent) -> None:
        pass

    per_job(metrics.listener)  # warm-up: builds the labelled children
    base = statistics.median(per_job(nothing) for _ in range(RUNS))
    with_metrics = statistics.median(per_job(metrics.listener) for _ in range(RUNS))

    def dispatch(batch: int) -> float:
        started = time.perf_counter_ns()
        for i in range(0, n, batch):
            metrics.dispatched(envelopes[i : i + batch])  # type: ignore[arg-type]
        return (time.perf_counter_ns() - started) / n

    one = statistics.median(dispatch(1) for _ in range(RUNS))
    many = statistics.median(dispatch(1000) for _ in range(RUNS))
    return {
        "listener": with_metrics - base,
        "base": base,
        "dispatch_1": one,
        "dispatch_1000": many,
        "multiprocess": float(metrics.multiprocess),
    }


def drain_rates(n: int) -> tuple[float, float]:
    """Jobs/s of one worker thread on the memory driver: a no-op listener, then metrics.

    A worker builds its events only when someone listens; under ``queue:work``
    the output and the event recorder always do, so the baseline has a
    listener that does nothing.
    """

    def one(with_metrics: bool) -> float:
        driver = MemoryDriver()
        worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions())
        if with_metrics:
            Metrics(registry=CollectorRegistry()).attach(worker)
        else:
            worker.add_listener(lambda event: None)
        now = time.time()
        driver.push_many([Noop().to_envelope(default_queue="default", now=now) for _ in range(n)])
        started = time.perf_counter()
        worker.drain()
        return n / (time.perf_counter() - started)

    rates = [(one(False), one(True)) for _ in range(RUNS)]
    return statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the multiprocess-mode run: print the figures as JSON
        print(json.dumps(listener_ns(args.jobs)))
        return

    memory = listener_ns(args.jobs)
    with tempfile.TemporaryDirectory(prefix="kashq-bench-metrics-") as directory:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--jobs", str(args.jobs)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    files = json.loads(child.stdout)
    assert files["multiprocess"] == 1.0, "the child did not run in multiprocess mode"
    off, on = drain_rates(min(args.jobs, 20_000))

    print(f"metrics cost, {args.jobs:,} jobs over 10 job types, medians of {RUNS} runs")
    print(f"{'':32}{'in memory':>12}{'multiprocess (files)':>24}")
    for label, key in (
        ("listener, per job (3 steps)", "listener"),
        ("dispatch(), per job", "dispatch_1"),
        ("dispatch_many(1000), per job", "dispatch_1000"),
    ):
        print(f"{label:32}{memory[key]:9.0f} ns{files[key]:21.0f} ns")
    print(f"(calling a no-op listener 3x costs {memory['base']:.0f} ns per job)")
    print(
        f"memory driver, 1 thread: {off:,.0f} jobs/s with a no-op listener, {on:,.0f} with metrics "
        f"({on / off:.0%}; {(1 / on - 1 / off) * 1e6:.1f} µs per job)"
    )


if __name__ == "__main__":
    main()
