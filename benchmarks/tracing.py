"""What OpenTelemetry tracing costs the ``queue:work`` drain, in three modes.

    python benchmarks/tracing.py [--jobs N] [--runs R] [--workers W]

Starts a private ``redis-server`` (or uses KASHQ_BENCH_REDIS_URL) and drains N
queued no-op jobs with the real command (``benchmarks/peers.py``'s jobs), measured
as ``costs.py`` measures (between 10% and 90% done, with the CPU per job of the
worker processes and of the Redis server), in three modes that take turns in every
run:

- ``not importable``: ``opentelemetry`` cannot be imported (a package of that name
  raising ModuleNotFoundError goes first on the workers' ``PYTHONPATH``): as without
  the ``otel`` extra;
- ``API, no SDK``: the API is installed and no tracer provider is set (kashq starts
  no span), the jobs dispatched untraced;
- ``SDK``: the workers ``--import otel_sdk`` (an SDK provider, a BatchSpanProcessor,
  an exporter that drops the spans), and the jobs are dispatched by a traced
  manager: each carries a ``traceparent``, each attempt is a consumer span.

Printed: the medians of R runs, the ratio of each mode's rate to "not importable",
and the raw redis-py round-trip rate of the same server (the limit the other
benchmarks print).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import redis
from common import private_redis, raw_round_trips
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_sdk_exporter import Discard
from peer_systems.adapters import Kashq
from peer_systems.harness import Bench, Row
from rich.console import Console
from rich.table import Table

import kashq

console = Console(width=110)
MODES = ("not importable", "API, no SDK", "SDK")
SHADOW = """raise ModuleNotFoundError("opentelemetry is hidden by benchmarks/tracing.py",
                          name="opentelemetry")
"""


class TracedKashq(Kashq):
    """kashq's adapter in one of :data:`MODES`."""

    def __init__(self, url: str, env: dict[str, str], mode: str, shadow: Path) -> None:
        super().__init__(url, env)
        self.mode = mode
        if mode == "not importable":
            self.env = {**self.env, "PYTHONPATH": f"{shadow}{os.pathsep}{self.env['PYTHONPATH']}"}
        if mode == "SDK":  # the application's dispatches are traced too
            self.manager.close()
            settings = kashq.load_settings(connection="redis", redis_url=url, prefix="bench")
            traced = TracerProvider()  # the workers' setup (otel_sdk.py), not made global here
            traced.add_span_processor(BatchSpanProcessor(Discard()))
            self.manager = kashq.QueueManager(settings, tracer_provider=traced)

    def worker_commands(self, procs: int) -> list[list[str]]:
        extra = ("--import", "otel_sdk") if self.mode == "SDK" else ()
        args = ("--workers", str(procs), *extra)
        return [self.work_command(*args, module="peer_systems.kashq_jobs")]


def measure(bench: Bench, url: str, mode: str, procs: int, shadow: Path) -> tuple[float, ...]:
    """One drain of N queued no-op jobs by ``--workers=procs`` in ``mode``."""
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    peer = TracedKashq(url, bench.env(url), mode, shadow)
    try:
        peer.bulk("noop", bench.n)
        peer.settle()
        rate, workers_us, redis_us = bench.drain(peer, admin, Row("kashq", "", None), procs)
    finally:
        peer.close()
        admin.flushdb()
    return rate, workers_us, redis_us


def table(args: argparse.Namespace, runs: dict[str, list[tuple[float, ...]]], raw: float) -> Table:
    out = Table(
        title=f"no-op drain of {args.jobs:,} jobs, --workers {args.workers}, "
        f"medians of {args.runs} runs"
    )
    for column in ("opentelemetry", "jobs/s", "ratio", "worker CPU µs/job", "Redis CPU µs/job"):
        out.add_column(column, justify="left" if column == "opentelemetry" else "right")
    base = statistics.median(run[0] for run in runs[MODES[0]])
    for mode in MODES:
        rate = statistics.median(run[0] for run in runs[mode])
        cpu = statistics.median(run[1] for run in runs[mode])
        redis_cpu = statistics.median(run[2] for run in runs[mode])
        out.add_row(mode, f"{rate:,.0f}", f"{rate / base:.3f}", f"{cpu:.1f}", f"{redis_cpu:.1f}")
    out.caption = (
        "runs (jobs/s): "
        + "; ".join(f"{m}: {' '.join(f'{r[0]:,.0f}' for r in runs[m])}" for m in MODES)
        + f"\nraw redis-py: {raw:,.0f} round trips/s (LPUSH, RPOP, 1 connection)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    shadow = Path(tempfile.mkdtemp(prefix="kashq-bench-no-otel-"))
    (shadow / "opentelemetry").mkdir()
    (shadow / "opentelemetry" / "__init__.py").write_text(SHADOW)
    with private_redis() as url:
        raw = raw_round_trips(url, args.jobs)
        db_url = url.rsplit("/", 1)[0] + "/1"
        os.environ["BENCH_REDIS_URL"] = db_url  # the job modules read it on import
        bench = Bench(db_url, args.jobs, args.runs, samples=0)
        runs: dict[str, list[tuple[float, ...]]] = {mode: [] for mode in MODES}
        for run in range(args.runs):
            for mode in MODES if run % 2 == 0 else MODES[::-1]:
                figures = measure(bench, db_url, mode, args.workers, shadow)
                runs[mode].append(figures)
                console.print(
                    f"[dim]run {run + 1}: {mode}: {figures[0]:,.0f} jobs/s, "
                    f"worker CPU {figures[1]:.1f} µs/job[/dim]"
                )
    console.print(table(args, runs, raw))


if __name__ == "__main__":
    main()
