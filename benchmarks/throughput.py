"""Throughput and latency of kashq's drivers, beside the raw Redis round-trip limit.

    python benchmarks/throughput.py [--jobs N] [--quick]

Starts a private ``redis-server`` (needs it on PATH; or set KASHQ_BENCH_REDIS_URL)
and a fresh SQLite file, then, for each driver, measures with no-op jobs: enqueue jobs/s with one
``Noop().dispatch()`` per job, ``dispatch_many`` jobs/s (one call with every job,
the jobs built beforehand), drain jobs/s with one worker
(a single consumer thread), and idle latency (dispatch → ``handle()`` starts).
The raw redis-py figure is one LPUSH + one RPOP per item, one round trip each,
measured in the same run; every Redis figure is also printed as a ratio to it.
Each figure is the median of 3 runs (1 with ``--quick``). With
``KASHQ_BENCH_POSTGRES_URL`` (or ``KASHQ_BENCH_MYSQL_URL``) set to a migrated database's
SQLAlchemy URL, PostgreSQL (MariaDB) is measured too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import p50_p99_ms, private_redis, raw_round_trips
from rich.console import Console
from rich.table import Table

import kashq
from kashq import Job, QueueManager

console = Console(width=110)  # wide enough for the table when not on a terminal
LATENCIES: list[float] = []
_started = threading.Event()


class Noop(Job):
    def handle(self) -> None:
        pass


class Stamp(Job):
    sent: float

    def handle(self) -> None:
        LATENCIES.append(time.perf_counter() - self.sent)
        _started.set()


@dataclass
class Result:
    name: str
    enqueue: float
    bulk: float
    drain: float
    p50_ms: float
    p99_ms: float


def rate(n: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def bench_connection(name: str, manager: QueueManager, n: int, samples: int, runs: int) -> Result:
    """Each figure is the median of ``runs`` runs."""
    manager.clear("default")
    enqueues, drains, bulks = [], [], []
    for _ in range(runs):
        enqueues.append(rate(n, lambda: [manager.dispatch(Noop()) for _ in range(n)]))
        drains.append(rate(n, lambda: _drain(manager)))
        prebuilt = [Noop() for _ in range(n)]  # building jobs is the caller's work
        bulks.append(rate(n, lambda jobs=prebuilt: manager.dispatch_many(jobs)))
        _drain(manager)
    p50, p99 = latency(manager, samples)
    median = statistics.median
    return Result(name, median(enqueues), median(bulks), median(drains), p50, p99)


def _drain(manager: QueueManager) -> None:
    worker = manager.worker(stop_when_empty=True)
    worker.run(1)


def latency(manager: QueueManager, samples: int) -> tuple[float, float]:
    LATENCIES.clear()
    worker = manager.worker(sleep_s=1.0).start(1)
    try:
        time.sleep(0.2)  # let the worker go idle
        for _ in range(samples):
            _started.clear()
            manager.dispatch(Stamp(sent=time.perf_counter()))
            _started.wait(5)
            time.sleep(0.002)
    finally:
        worker.stop()
    return p50_p99_ms(LATENCIES)


@dataclass(frozen=True)
class Size:
    """How much to measure: jobs per run, latency samples, runs (from ``--jobs``/``--quick``)."""

    n: int
    samples: int
    runs: int


def parse_size(description: str) -> Size:
    """The command line shared by the driver benchmarks."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, one run: a smoke run")
    args = parser.parse_args()
    if args.quick:
        return Size(2_000, 50, 1)
    return Size(args.jobs, 300, 3)


def bench_all(connections: dict[str, kashq.Settings], size: Size) -> list[Result]:
    """:func:`bench_connection` for each named connection, each manager closed after."""
    results = []
    for name, settings in connections.items():
        manager = QueueManager(settings)
        try:
            results.append(bench_connection(name, manager, size.n, size.samples, size.runs))
        finally:
            manager.close()
    return results


def main() -> None:
    size = parse_size(__doc__.splitlines()[0])
    n, runs = size.n, size.runs
    with private_redis() as url:
        raw = raw_round_trips(url, n)
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        sqlite_file = Path(tempfile.mkdtemp(prefix="kashq-bench-")) / "kashq.sqlite"
        connections = {
            "memory": kashq.load_settings(connection="memory"),
            "redis": kashq.load_settings(connection="redis", redis_url=url, prefix=prefix),
            "database (SQLite)": kashq.load_settings(
                connection="database", database_url=f"sqlite:///{sqlite_file}"
            ),
        }
        for name, variable in (("PostgreSQL", "POSTGRES"), ("MariaDB", "MYSQL")):
            database_url = os.environ.get(f"KASHQ_BENCH_{variable}_URL")
            if database_url:
                connections[f"database ({name})"] = kashq.load_settings(
                    connection="database", database_url=database_url
                )
        results = bench_all(connections, size)

    title = f"kashq, {n:,} no-op jobs, one worker thread, median of {runs} run(s)"
    console.print(results_table(title, "driver", results, raw, with_ratio={"redis"}))
    console.print("Ratios are to the raw redis-py round-trip rate (LPUSH, RPOP, 1 connection).")


def results_table(
    title: str, first: str, results: list[Result], raw: float, *, with_ratio: set[str] | None
) -> Table:
    """The results as a table; rows named in ``with_ratio`` (None: all) show ratios to ``raw``."""
    table = Table(title=title)
    for column in (first, "enqueue/s", "dispatch_many/s", "drain/s", "latency p50", "p99"):
        table.add_column(column, justify="right")
    for r in results:
        shown = with_ratio is None or r.name in with_ratio
        ratio = (lambda v: f" ({v / raw:.0%})") if shown else (lambda v: "")
        table.add_row(
            r.name,
            f"{r.enqueue:,.0f}{ratio(r.enqueue)}",
            f"{r.bulk:,.0f}",
            f"{r.drain:,.0f}{ratio(r.drain)}",
            f"{r.p50_ms:.2f} ms",
            f"{r.p99_ms:.2f} ms",
        )
    table.add_row("raw redis-py", f"{raw:,.0f} round trips/s", "", "", "", "")
    return table


if __name__ == "__main__":
    main()
