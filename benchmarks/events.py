"""What recording events costs a worker: drain rate on Redis with the event store off and on.

    python benchmarks/events.py [--jobs N] [--runs R]

Starts a private ``redis-server`` (needs it on PATH; or set KASHQ_BENCH_REDIS_URL).
Each run dispatches N no-op jobs (``push_many``; with events on, also
``recorder.dispatched``), waits for those events to be written, then times one
worker thread draining the queue: with events on, the worker has
``recorder.listener`` and the timing includes writing the last events
(``recorder.flush()``). Runs alternate off/on; each figure is the median.
Beside jobs/s it prints the process's CPU time per job (user + system, both
threads), which moves much less than wall time on a busy machine. The raw
redis-py round-trip rate is printed for scale. Target: on >= 85% of off.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass

from common import private_redis, raw_round_trips
from rich.console import Console
from rich.table import Table

import kashq
from kashq import Job, QueueManager
from kashq.events import EventRecorder, store_for
from kashq.events.redis import RedisEventStore

console = Console(width=110)


class Noop(Job):
    def handle(self) -> None:
        pass


@dataclass
class Run:
    rate: float  # jobs/s
    cpu_us: float  # process CPU time per job, microseconds
    stored: int  # events in the stream afterwards


def drain_rate(url: str, n: int, events: bool) -> Run:
    """One worker thread draining ``n`` no-op jobs, with or without recording events."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    settings = kashq.load_settings(connection="redis", redis_url=url, prefix=prefix)
    manager = QueueManager(settings)
    driver = manager.connection()
    recorder = EventRecorder(store_for(driver, settings)) if events else None
    try:
        envelopes = [manager.envelope_for(Noop()) for _ in range(n)]
        driver.push_many(envelopes)
        if recorder is not None:
            recorder.dispatched(envelopes)
            recorder.flush(timeout_s=60)
        worker = manager.worker(stop_when_empty=True)
        if recorder is not None:
            worker.add_listener(recorder.listener)
        started, cpu = time.perf_counter(), time.process_time()
        worker.run(1)
        if recorder is not None:
            recorder.flush(timeout_s=60)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert worker.stats.completed == n, worker.stats
        stored = RedisEventStore(driver.client, prefix=prefix, max_len=100).length()
        return Run(n / took, cpu / n * 1e6, stored)
    finally:
        if recorder is not None:
            recorder.close()
        driver.client.delete(*driver.client.keys(f"{prefix}:*") or ["-"])
        manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = args.jobs

    off: list[Run] = []
    on: list[Run] = []
    with private_redis() as url:
        raw = raw_round_trips(url, min(n, 20_000))
        drain_rate(url, min(n, 2_000), events=True)  # warm-up: imports, scripts, connections
        for _ in range(args.runs):
            off.append(drain_rate(url, n, events=False))
            on.append(drain_rate(url, n, events=True))

    median = statistics.median
    off_rate, on_rate = median(r.rate for r in off), median(r.rate for r in on)
    off_cpu, on_cpu = median(r.cpu_us for r in off), median(r.cpu_us for r in on)
    table = Table(title=f"kashq drain, {n:,} no-op jobs on Redis, one worker thread")
    for column in ("events", "drain jobs/s", "CPU µs/job", "each run (jobs/s)"):
        table.add_column(column, justify="right")
    for name, runs, rate, cpu in (("off", off, off_rate, off_cpu), ("on", on, on_rate, on_cpu)):
        table.add_row(name, f"{rate:,.0f}", f"{cpu:.1f}", ", ".join(f"{r.rate:,.0f}" for r in runs))
    console.print(table)
    console.print(
        f"on/off: {on_rate / off_rate:.1%} of the drain rate (target >= 85%), "
        f"{on_cpu - off_cpu:+.1f} µs of CPU per job. Events in the stream after the last run: "
        f"{on[-1].stored:,} (dispatched + started + completed per job, capped near "
        f"{kashq.load_settings().events_max_len:,}). Raw redis-py: {raw:,.0f} round trips/s."
    )


if __name__ == "__main__":
    main()
