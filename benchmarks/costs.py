"""What the event store costs and what a second worker gives, on ``kashq queue:work``.

    python benchmarks/costs.py [--jobs N] [--runs R] [--job noop|incr|both]

Starts a private ``redis-server`` (or uses KASHQ_BENCH_REDIS_URL) and drains N
queued jobs with the real command, in four configurations that take turns in
every run: ``--workers=1`` and ``--workers=2``, each with the event store on (the
default) and off (``KASHQ_EVENTS=false``). The jobs are ``benchmarks/peers.py``'s:
a no-op, and a realistic job that sends one Redis ``INCR`` of its own. Each drain
is measured as ``peers.py`` measures it (between 10% and 90% done, as the jobs
count themselves), with the CPU per job of every worker process and of the Redis
server, and the share of the machine's CPU time that was busy in that window.

Printed per job: the medians of R runs (default 5), the ratio of events on to
events off, and of two workers to one. Taking turns puts every configuration
through the same moods of a shared machine; compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field

import redis
from common import private_redis
from peer_systems.adapters import Kashq
from peer_systems.harness import Bench, Row
from rich.console import Console
from rich.table import Table

console = Console(width=110)
CONFIGS = [(1, True), (1, False), (2, True), (2, False)]  # (worker processes, events)


@dataclass
class Drains:
    """The runs of one configuration: (jobs/s, worker CPU µs/job, Redis CPU µs/job, busy %)."""

    runs: list[tuple[float, float, float, float]] = field(default_factory=list)

    def median(self, column: int) -> float:
        return statistics.median(run[column] for run in self.runs)


def measure(bench: Bench, url: str, job: str, procs: int, events: bool) -> tuple[float, ...]:
    """One drain of N queued ``job`` jobs by ``--workers=procs``, events on or off."""
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    peer = Kashq(url, {**bench.env(url), "KASHQ_EVENTS": "true" if events else "false"})
    try:
        peer.bulk(job, bench.n)
        peer.settle()
        rate, workers_us, redis_us = bench.drain(peer, admin, Row("kashq", "", None), procs)
    finally:
        peer.close()
        admin.flushdb()
    return rate, workers_us, redis_us, 100 * bench.cores_busy


def table(job: str, drains: dict[tuple[int, bool], Drains]) -> Table:
    out = Table(title=f"{job} job: medians of {len(drains[CONFIGS[0]].runs)} runs")
    for column in ("workers", "events", "jobs/s", "worker CPU µs/job", "Redis CPU µs/job"):
        out.add_column(column, justify="right")
    out.add_column("cores busy", justify="right")
    for procs, events in CONFIGS:
        d = drains[(procs, events)]
        out.add_row(
            str(procs), "on" if events else "off", f"{d.median(0):,.0f}",
            f"{d.median(1):.1f}", f"{d.median(2):.1f}", f"{d.median(3):.0f}%",
        )  # fmt: skip
    rate = {config: drains[config].median(0) for config in CONFIGS}
    out.caption = (
        f"events on / off: {rate[(1, True)] / rate[(1, False)]:.0%} (1 worker), "
        f"{rate[(2, True)] / rate[(2, False)]:.0%} (2 workers); "
        f"2 workers / 1: {rate[(2, True)] / rate[(1, True)]:.2f}x (events on), "
        f"{rate[(2, False)] / rate[(1, False)]:.2f}x (off)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--job", choices=["noop", "incr", "both"], default="both")
    args = parser.parse_args()
    jobs = ["noop", "incr"] if args.job == "both" else [args.job]
    started = time.monotonic()
    with private_redis() as url:
        db_url = url.rsplit("/", 1)[0] + "/1"
        os.environ["BENCH_REDIS_URL"] = db_url  # the job modules read it on import
        bench = Bench(db_url, args.jobs, args.runs, samples=0)
        results = {job: {config: Drains() for config in CONFIGS} for job in jobs}
        for run in range(args.runs):
            for job in jobs:
                for procs, events in CONFIGS:
                    figures = measure(bench, db_url, job, procs, events)
                    results[job][(procs, events)].runs.append(figures)
            console.print(f"[dim]run {run + 1} of {args.runs} done[/dim]")
    console.print(f"{args.jobs:,} jobs per drain; {os.cpu_count()} cores")
    for job in jobs:
        console.print(table(job, results[job]))
    console.print(f"[dim]took {time.monotonic() - started:.0f} s[/dim]")


if __name__ == "__main__":
    main()
