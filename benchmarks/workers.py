"""``kashq queue:work`` on Redis: drain jobs/s with 1 and 2 worker processes, and idle latency.

    python benchmarks/workers.py [--jobs N] [--quick]

Starts a private ``redis-server`` (or uses KASHQ_BENCH_REDIS_URL) and runs the
real ``kashq queue:work`` command (supervisor + worker processes, hard
timeouts and lease renewal on, output off with ``--quiet``) on no-op jobs:

- drain: N jobs are queued, the supervisor is started, and the queue length
  is sampled every 20 ms; the rate is taken between 90% and 10% left, so
  process start-up and the tail do not count;
- latency: one idle worker; a job is dispatched, and ``handle()`` reports when
  it started (dispatch → start), 300 times with a pause between.

The event store is on, as by default; `--no-events` measures with it off.

The raw redis-py round-trip rate is measured in the same run. Medians of 3
runs (1 with ``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from common import p50_p99_ms, private_redis, raw_round_trips
from rich.console import Console
from rich.table import Table

import kashq
from kashq import QueueManager

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_jobs  # noqa: E402  (the worker processes import it by this name)

console = Console(width=110)


def work_command(*args: str, module: str = "bench_jobs") -> list[str]:
    """The ``kashq queue:work`` command line, quiet, importing ``module`` (run from HERE)."""
    return [sys.executable, "-m", "kashq", "queue:work", "--import", module, "--quiet", *args]


def kashq_env(url: str, prefix: str, *, events: bool = True) -> dict[str, str]:
    """The environment of the ``queue:work`` processes: Redis at ``url`` under ``prefix``."""
    workdir = Path(tempfile.mkdtemp(prefix="kashq-bench-"))
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("KASHQ_")},
        "KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": url, "KASHQ_PREFIX": prefix,
        "KASHQ_DATABASE_URL": f"sqlite:///{workdir / 'kashq.sqlite'}",
        "BENCH_LATENCY_KEY": f"{prefix}:latency",
        "KASHQ_EVENTS": "true" if events else "false",
    }  # fmt: skip


def start_work(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        work_command(*args), cwd=HERE, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM to the process and its children (its own session), SIGKILL after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def window_rate(samples: list[tuple[float, int]], n: int) -> float:
    """Jobs/s between 10% and 90% of ``n`` jobs done, from ``(time, done)`` samples."""
    t_low = next(t for t, done in samples if done >= 0.1 * n)
    t_high = next(t for t, done in samples if done >= 0.9 * n)
    return 0.8 * n / (t_high - t_low)


def drain_rate(manager: QueueManager, env: dict[str, str], n: int, workers: int) -> float:
    """Jobs/s while the queue goes from 90% to 10% of ``n`` jobs left."""
    driver = manager.connection()
    manager.dispatch_many([bench_jobs.Noop() for _ in range(n)])
    proc = start_work(env, "--workers", str(workers))
    samples: list[tuple[float, int]] = []
    try:
        while True:
            left = driver.sizes(["default"])["default"].total
            samples.append((time.perf_counter(), left))
            if left == 0 or proc.poll() is not None:
                break
            time.sleep(0.02)
    finally:
        stop(proc)
    return window_rate([(t, n - left) for t, left in samples], n)


def idle_latency(manager: QueueManager, env: dict[str, str], samples: int) -> tuple[float, float]:
    client = redis.Redis.from_url(env["KASHQ_REDIS_URL"])
    key = env["BENCH_LATENCY_KEY"]
    proc = start_work(env, "--workers", "1", "--sleep", "5")
    try:
        manager.dispatch(bench_jobs.Stamp(sent=time.time()))  # warm-up: wait for the worker
        client.blpop([key], 60)
        latencies = []
        for _ in range(samples):
            time.sleep(0.01)  # the worker is idle, blocked waiting for a job
            manager.dispatch(bench_jobs.Stamp(sent=time.time()))
            popped = client.blpop([key], 10)
            assert popped is not None, "the worker did not run the job"
            latencies.append(float(popped[1]))
    finally:
        stop(proc)
    return p50_p99_ms(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="4,000 jobs, one run: a smoke run")
    parser.add_argument(
        "--no-events", action="store_true", help="KASHQ_EVENTS=false: no event store writes"
    )
    args = parser.parse_args()
    n = 4_000 if args.quick else args.jobs
    runs = 1 if args.quick else 3
    samples = 50 if args.quick else 300

    with private_redis() as url:
        raw = raw_round_trips(url, n)
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        env = kashq_env(url, prefix, events=not args.no_events)
        manager = QueueManager(
            kashq.load_settings(connection="redis", redis_url=url, prefix=prefix)
        )
        try:
            one = statistics.median(drain_rate(manager, env, n, 1) for _ in range(runs))
            two = statistics.median(drain_rate(manager, env, n, 2) for _ in range(runs))
            p50, p99 = idle_latency(manager, env, samples)
        finally:
            manager.close()

    events = "events off" if args.no_events else "events on"
    title = f"kashq queue:work on Redis, {n:,} no-op jobs, {events}, median of {runs} run(s)"
    table = Table(title=title)
    for column in ("workers", "drain/s", "of raw", "scaling"):
        table.add_column(column, justify="right")
    table.add_row("--workers=1", f"{one:,.0f}", f"{one / raw:.0%}", "1.00x")
    table.add_row("--workers=2", f"{two:,.0f}", f"{two / raw:.0%}", f"{two / one:.2f}x")
    console.print(table)
    console.print(f"idle latency, dispatch → handle() starts: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    console.print(f"raw redis-py: {raw:,.0f} round trips/s (LPUSH, RPOP, 1 connection, same run)")


if __name__ == "__main__":
    main()
