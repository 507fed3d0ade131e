"""What keeping results costs, and how soon ``result(timeout)`` wakes, per connection.

    python benchmarks/results.py [--jobs N] [--waits W] [--runs R]

For Redis (a private ``redis-server``, or KASHQ_BENCH_REDIS_URL), PostgreSQL,
MariaDB and SQLite, in one process:

- **drain**: a worker thread (prefetch 8, events off) drains N queued jobs that
  return ``None`` (no result written) and N that return a small dict (one
  write each), taking turns over R runs. Printed: the medians in jobs/s, the
  µs each stored result adds per job, and on Redis the commands the server ran
  per job (from ``INFO``), beside the raw round-trip rate of the same client.
- **wake**: W jobs, one at a time, each awaited by ``result(timeout=...)`` here
  while a ``queue:work``-like worker in another process runs it: from the end
  of ``handle()`` to the waiter holding the value, p50 and p95 (the value is
  the job's own ``time.time()``; both processes read the same system clock).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from common import private_redis, raw_round_trips
from rich.console import Console
from rich.table import Table

import kashq
from kashq import QueueManager
from kashq.config import load_settings
from kashq.db import migrate

console = Console(width=110)
POSTGRES = os.environ.get(
    "KASHQ_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/test"
)
MARIADB = os.environ.get("KASHQ_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1/test")


class Noop(kashq.Job):
    n: int = 0

    def handle(self) -> None:
        return None


class Small(kashq.Job):
    n: int = 0

    def handle(self) -> dict[str, int]:
        return {"n": self.n, "ok": 1}


WORKER = """
import time, kashq

class Stamp(kashq.Job):
    def handle(self) -> float:
        return time.time()

kashq.register("bench.Stamp", Stamp)
kashq.manager().worker(prefetch=1, sleep_s=0.05).run(1)
"""


def settings_for(kind: str, url: str, tmp: Path, prefix: str) -> dict[str, str]:
    """The settings (``KASHQ_*`` names, lowercased) of one connection under ``prefix``."""
    if kind == "redis":
        failed = f"sqlite:///{tmp / 'failed.sqlite'}"
        return {"connection": "redis", "redis_url": url, "prefix": prefix.rstrip("_"),
                "events": "false", "database_url": failed}  # fmt: skip
    return {
        "connection": "database",
        "database_url": url,
        "table_prefix": prefix,
        "events": "false",
    }


@contextmanager
def manager_for(kind: str, url: str, tmp: Path) -> Iterator[QueueManager]:
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    if kind not in ("redis", "sqlite"):
        migrate.upgrade(url, table_prefix=prefix)
    manager = QueueManager(load_settings(**settings_for(kind, url, tmp, prefix)))
    manager.bench_prefix = prefix  # type: ignore[attr-defined]
    try:
        yield manager
    finally:
        manager.close()
        if kind not in ("redis", "sqlite"):
            migrate.downgrade(url, "base", table_prefix=prefix)


def drain_rate(manager: QueueManager, job: type[kashq.Job], n: int) -> float:
    manager.dispatch_many([job(n=i) for i in range(n)])
    worker = manager.worker(stop_when_empty=True, prefetch=8, sleep_s=0.05)
    started = time.perf_counter()
    worker.run(1)
    return n / (time.perf_counter() - started)


def redis_commands(url: str) -> int:
    return int(redis.Redis.from_url(url).info("stats")["total_commands_processed"])


def drains(kind: str, url: str, n: int, runs: int, tmp: Path) -> tuple[float, float, float]:
    """Median jobs/s returning None, returning a dict, and extra commands per result."""
    rates: dict[str, list[float]] = {"none": [], "small": []}
    extra: list[float] = []
    for _ in range(runs):
        for name, job in (("none", Noop), ("small", Small)):
            with manager_for(kind, url, tmp) as manager:
                before = redis_commands(url) if kind == "redis" else 0
                rates[name].append(drain_rate(manager, job, n))
                if kind == "redis":
                    extra.append((redis_commands(url) - before) / n)
    per_job = extra[1::2] and [b - a for a, b in zip(extra[::2], extra[1::2], strict=True)]
    return (
        statistics.median(rates["none"]),
        statistics.median(rates["small"]),
        statistics.median(per_job) if per_job else float("nan"),
    )


def wake_latency(kind: str, url: str, waits: int, tmp: Path) -> tuple[float, float]:
    with manager_for(kind, url, tmp) as manager:
        prefix = manager.bench_prefix  # type: ignore[attr-defined]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KASHQ_")}
        env.update(
            {f"KASHQ_{k.upper()}": v for k, v in settings_for(kind, url, tmp, prefix).items()}
        )
        worker = subprocess.Popen([sys.executable, "-c", WORKER], env=env)
        delays: list[float] = []
        try:
            for _ in range(waits):
                handle = manager.dispatch(kashq.NamedJob("bench.Stamp"))
                assert handle is not None
                ended_at = handle.result(timeout=30)
                delays.append(time.time() - ended_at)
        finally:
            worker.terminate()
            worker.wait(10)
    delays.sort()
    return 1000 * statistics.median(delays), 1000 * delays[int(0.95 * (len(delays) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--waits", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"kashq-results-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    table = Table(title=f"results: {args.jobs} jobs per drain, median of {args.runs}")
    for column in ("connection", "None jobs/s", "result jobs/s", "µs per result",
                   "commands per result", "wake p50 ms", "wake p95 ms"):  # fmt: skip
        table.add_column(column, justify="right" if column != "connection" else "left")
    with private_redis() as redis_url:
        raw = raw_round_trips(redis_url, 5000)
        targets = [
            ("redis", redis_url),
            ("postgres", POSTGRES),
            ("mariadb", MARIADB),
            ("sqlite", f"sqlite:///{tmp / 'kashq.sqlite'}"),
        ]
        for kind, url in targets:
            none_rate, small_rate, commands = drains(kind, url, args.jobs, args.runs, tmp)
            p50, p95 = wake_latency(kind, url, args.waits, tmp)
            added_us = 1e6 / small_rate - 1e6 / none_rate
            table.add_row(
                kind, f"{none_rate:,.0f}", f"{small_rate:,.0f}", f"{added_us:.1f}",
                "" if math.isnan(commands) else f"{commands:.2f}", f"{p50:.1f}", f"{p95:.1f}",
            )  # fmt: skip
    console.print(table)
    console.print(f"raw redis-py round trips (LPUSH+RPOP pairs): {raw:,.0f}/s")


if __name__ == "__main__":
    main()
