"""kashq beside taskiq, Huey, Dramatiq, Celery and RQ: one run, one private Redis, rates and CPU.

    pip install -e '.[bench]'
    python benchmarks/peers.py [--jobs N] [--quick] [--only kashq,rq] [--job noop|incr|both]

Starts a private ``redis-server`` (or uses KASHQ_BENCH_REDIS_URL) and gives each
system its own database on it, flushed before and after. Two job variants, the
same for every system (``peer_systems/probe.py``): ``noop`` only counts itself
done; ``incr`` (the realistic one) first runs one ``INCR bench-incr`` on its
system's database through a redis-py client made once per process. For each
system, each variant and the same N (``peer_systems/harness.py`` says exactly how):

- enqueue: one call per job, building the job included (kashq ``dispatch()``,
  taskiq ``kiq()``, Huey's task call, Dramatiq ``send()``, Celery ``delay()``,
  RQ ``enqueue()``): jobs/s, and the enqueuing process's CPU µs per job
  (``time.process_time()``) and the Redis server's (``INFO cpu``), over the call;
- bulk: the system's bulk or concurrent enqueue, building the N jobs (kashq's
  ``dispatch_many`` list, RQ's ``prepare_data`` list, Celery's group) included;
  the same three numbers;
- drain with 1 and with 2 worker processes, started from the system's own CLI
  once N jobs are queued, from 10% to 90% of the jobs done as counted by the
  jobs themselves (start-up and the tail left out): jobs/s, and over the same
  window the CPU µs per job of every process the worker commands started
  (supervisors and children, from ``/proc/<pid>/stat``) and of Redis;
- Redis commands per job: ``INFO commandstats`` after ``CONFIG RESETSTAT``, one
  enqueue (one call per job) and the 1-process drain of N jobs, / N (first run);
- idle latency, once per system: one idle worker; dispatch → handler starts.

And kashq's worker RSS after 100,000 jobs (``--quick``: 20,000). The raw
redis-py round-trip rate is measured in the same run, and every rate is also
shown as a ratio to it. Medians of 3 runs (1 with ``--quick``); in each run the
variants take turns. A system that fails to import or run shows its error.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import redis
from common import private_redis, raw_round_trips
from peer_systems.adapters import PEERS, Kashq
from peer_systems.harness import JOBS, Bench, Figure, Row
from rich.console import Console
from rich.table import Table

console = Console(width=170)
VARIANTS = {
    "noop": "no-op job (it only counts itself done)",
    "incr": "realistic job (one Redis INCR, then it counts itself done)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="N, the jobs per measurement")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 1 run: a few minutes")
    parser.add_argument("--only", default="", help="comma-separated systems (default: all)")
    parser.add_argument("--job", choices=[*JOBS, "both"], default="both", help="job variant(s)")
    parser.add_argument("--rss-jobs", type=int, default=100_000, help="jobs for kashq's RSS")
    args = parser.parse_args()
    n = 2_000 if args.quick else args.jobs
    runs = 1 if args.quick else 3
    samples = 30 if args.quick else 100
    rss_jobs = 20_000 if args.quick else args.rss_jobs
    jobs = list(JOBS) if args.job == "both" else [args.job]
    chosen = [p for p in PEERS if not args.only or p.name in args.only.split(",")]

    started = time.monotonic()
    rows: list[Row] = []
    with private_redis() as url:
        server = redis.Redis.from_url(url).info("server")["redis_version"]
        raw = raw_round_trips(url, n)
        bench = Bench(url, n, runs, samples)
        for db, peer_class in enumerate(chosen, start=1):
            console.print(f"[dim]{peer_class.name} ...[/dim]")
            rows.append(bench.measure(peer_class, db, jobs))
        rss = kashq_rss(bench, url, rss_jobs) if Kashq in chosen else ""

    console.print(
        f"{n:,} jobs per measurement, median of {runs} run(s); "
        f"Python {platform.python_version()}, Redis {server}, {os.cpu_count()} cores"
    )
    console.print(systems_table(rows))
    for job in jobs:
        console.print(figures_table(job, rows, raw))
        for row in rows:
            top = row.results[job].top_cmds
            if top:
                console.print(f"  {row.name}: Redis commands per job, most called: {top}")
    for row in rows:
        for error in row.errors:
            console.print(f"  [red]{row.name}: {error}[/red]")
    if rss:
        console.print(rss)
    console.print(f"[dim]took {time.monotonic() - started:.0f} s[/dim]")


def kashq_rss(bench: Bench, url: str, jobs: int) -> str:
    """kashq's worker RSS after 1,000 and after ``jobs`` jobs, as one printed line."""
    db = len(PEERS) + 1
    db_url = url.rsplit("/", 1)[0] + f"/{db}"
    admin = redis.Redis.from_url(db_url)
    admin.flushdb()
    peer = Kashq(db_url, bench.env(db_url))
    try:
        early, late, procs = bench.worker_rss(peer, jobs)
    except Exception as exc:
        return f"kashq worker RSS: failed: {type(exc).__name__}: {exc}"
    finally:
        peer.close()
        admin.flushdb()
    recycled = f" ({procs} worker processes: one was recycled)" if procs > 1 else ""
    return (
        f"kashq worker RSS (queue:work --workers=1): {early:.1f} MB after 1,000 jobs, "
        f"{late:.1f} MB after {jobs:,} jobs{recycled}"
    )


def systems_table(rows: list[Row]) -> Table:
    """What each system runs, how many processes its drains measured, its idle latency."""
    out = Table(title="The systems")
    for column in ("system", "config", "bulk enqueue"):
        out.add_column(column)
    out.add_column("processes measured\n1 proc | 2 procs", justify="right")
    out.add_column("idle latency\np50 / p99", justify="right")
    for row in rows:
        config = row.config
        if row.errors:
            config += f"\n[red]{row.errors[0][:90]}[/red]"
        seen = " | ".join(str(row.processes.get(procs, "?")) for procs in (1, 2))
        latency = "failed" if row.p50_ms is None else f"{row.p50_ms:.2f} / {row.p99_ms:.2f} ms"
        out.add_row(row.name, config, row.bulk_label or "—", seen, latency)
    out.caption = (
        "processes measured: every process the worker command(s) started, seen at the start of "
        "the drain's window; latency: dispatch → handler starts, one idle worker"
    )
    return out


def figures_table(job: str, rows: list[Row], raw: float) -> Table:
    """Rates and CPU µs per job of every system on one job variant."""
    out = Table(title=f"The {VARIANTS[job]}")
    out.add_column("system")
    for name in ("enqueue", "bulk", "drain 1 proc", "drain 2 procs"):
        who = "workers" if name.startswith("drain") else "client"
        out.add_column(f"{name}\njobs/s (of raw)", justify="right")
        out.add_column(f"CPU µs/job\n{who} | redis", justify="right")
    out.add_column("Redis\ncmds/job", justify="right")
    for row in rows:
        result = row.results[job]
        missing = "[red]failed[/red]" if row.errors else "—"
        cells: list[str] = []
        for figure in (result.enqueue, result.bulk, result.drain1, result.drain2):
            absent = "—" if figure is result.bulk and not row.bulk_label else missing
            cells += _figure_cells(figure, raw, absent)
        cmds = "—" if result.cmds_per_job is None else f"{result.cmds_per_job:.1f}"
        out.add_row(row.name, *cells, cmds)
    out.add_section()
    out.add_row("raw redis-py", f"{raw:,.0f} (100%)")
    out.caption = (
        "(of raw) = ratio to the raw redis-py rate: round trips/s of LPUSH + RPOP on 1 connection, "
        "measured in the same run; "
        "CPU µs/job: the enqueuing process (client) or all the worker processes (workers), "
        "and the Redis server"
    )
    return out


def _figure_cells(figure: Figure, raw: float, absent: str) -> list[str]:
    rate, client_us, redis_us = figure.rate, figure.client_us, figure.redis_us
    if rate is None or client_us is None or redis_us is None:
        return [absent, absent]
    return [f"{rate:,.0f} ({rate / raw:.0%})", f"{_us(client_us)} | {_us(redis_us)}"]


def _us(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


if __name__ == "__main__":
    main()
