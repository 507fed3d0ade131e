"""kashq's database connection on PostgreSQL beside Procrastinate, PgQueuer, Chancy and oban-py.

    python benchmarks/pg_peers.py --setup        # once: the peers' venvs (pip)
    python benchmarks/pg_peers.py [--jobs N] [--quick] [--only kashq,procrastinate,...]

One PostgreSQL server (``KASHQ_BENCH_POSTGRES_ADMIN_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``), used as it is configured
(here autovacuum off, synchronous_commit on). Every measurement gets a fresh
database and the system's own schema command (kashq ``migrate``,
``procrastinate schema --apply``, ``pgq install``, ``chancy misc migrate``,
``oban install``). The same no-op job everywhere: it only counts itself done.
Each peer runs in a venv of its own (``pg_peer_systems/systems.py``), so the
enqueueing runs in a subprocess of that venv, timed inside it
(``pg_peer_systems/client.py``). For each system and the same N:

- enqueue: one call per job, building the job included (kashq
  ``Noop().dispatch()``, Procrastinate ``defer_async()``, PgQueuer
  ``queries.enqueue()``, Chancy ``push()``, oban ``Noop.enqueue()``): jobs/s;
- bulk: the system's bulk API, building the N jobs included (kashq
  ``dispatch_many``, ``batch_defer_async``, ``enqueue`` with lists,
  ``push_many``, ``enqueue_many``): jobs/s;
- drain with 1 and with 2 worker processes, started from the system's own
  CLI once N jobs are queued, from 10% to 90% of the jobs done as counted by
  the jobs themselves (start-up and the tail left out): jobs/s;
- idle latency p50/p99, once per system: one idle worker; a job carrying its
  send time (read just before the enqueue call) reports start minus send,
  SAMPLES times with 20 ms pauses.

``pg_peer_systems/harness.py`` says exactly how. The raw limits, measured in
the same run from Python (psycopg, one connection): ``SELECT 1`` round trips/s
and single-row ``INSERT`` + ``COMMIT``/s; every rate is also shown as a ratio
to the latter. Medians of 3 runs (1 with ``--quick``, N = 1,000); the runs
take turns between the systems, so they share the machine's moods. A system
that fails to install, import or run shows its error in the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import psycopg
from pg_peer_systems.harness import FIGURES, Bench, Row, raw_limits
from pg_peer_systems.systems import SYSTEMS, System
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=160)
ADMIN_URL = os.environ.get(
    "KASHQ_BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
HEADERS = {
    "enqueue": "enqueue",
    "bulk": "bulk",
    "drain1": "drain 1 proc",
    "drain2": "drain 2 procs",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000, help="N, the jobs per measurement")
    parser.add_argument("--quick", action="store_true", help="1,000 jobs, 1 run, 30 samples")
    parser.add_argument("--only", default="", help="comma-separated systems (default: all)")
    parser.add_argument("--samples", type=int, default=100, help="idle latency samples")
    parser.add_argument(
        "--setup", action="store_true", help="create or update the venvs, then exit"
    )
    args = parser.parse_args()
    n = 1_000 if args.quick else args.jobs
    runs = 1 if args.quick else 3
    samples = 30 if args.quick else args.samples
    names = args.only.split(",") if args.only else [system.name for system in SYSTEMS]
    unknown = set(names) - {system.name for system in SYSTEMS}
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    chosen = [system() for system in SYSTEMS if system.name in names]
    if args.setup:
        setup(chosen)
        return

    started = time.monotonic()
    console.print(f"[dim]{server_line()}; measuring the raw limits ...[/dim]")
    select_rate, insert_rate = raw_limits(ADMIN_URL, n)
    bench = Bench(ADMIN_URL, n, samples)
    rows = {system.name: Row(system.name, system.config, system.bulk_label) for system in chosen}
    for system in chosen:
        try:
            system.check()
        except Exception as exc:
            rows[system.name].errors["setup"] = str(exc)
    ready = [system for system in chosen if "setup" not in rows[system.name].errors]
    for run in range(runs):
        for system in ready:
            console.print(f"[dim]run {run + 1}/{runs}: {system.name} ...[/dim]")
            bench.one_run(system, rows[system.name])
    for system in ready:
        console.print(f"[dim]idle latency: {system.name} ...[/dim]")
        bench.latency(system, rows[system.name])
    bench.close()

    console.print(
        f"{n:,} no-op jobs per measurement, median of {runs} run(s), {samples} latency samples; "
        f"{server_line()}; {os.cpu_count()} cores"
    )
    console.print(table(list(rows.values()), insert_rate))
    console.print(
        f"raw PostgreSQL from Python (psycopg {psycopg.__version__}, one connection, same run): "
        f"SELECT 1 {select_rate:,.0f} round trips/s; "
        f"single-row INSERT + COMMIT {insert_rate:,.0f}/s"
    )
    for system in chosen:
        console.print(f"  {system.name}: {escape(system.config)}; bulk: {system.bulk_label}")
    for row in rows.values():
        for figure, error in row.errors.items():
            console.print(f"  [red]{row.name} {figure}: {escape(error)}[/red]")
    console.print(f"[dim]took {time.monotonic() - started:.0f} s[/dim]")


def setup(systems: list[System]) -> None:
    """Creates or updates each peer's venv with pip; says which failed and why."""
    for system in systems:
        console.print(f"[dim]{system.name}: {system.venv} ...[/dim]")
        try:
            system.setup()
            installed = escape(", ".join(system.requirements) or "its venv")
            console.print(f"{system.name}: ready ({installed})")
        except Exception as exc:
            console.print(f"[red]{system.name}: {escape(str(exc))}[/red]")


def server_line() -> str:
    """PostgreSQL's version and the settings that matter here, as the server has them."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        autovacuum = conn.execute("SHOW autovacuum").fetchone()
        commit = conn.execute("SHOW synchronous_commit").fetchone()
    assert version and autovacuum and commit
    return (
        f"Python {platform.python_version()} (kashq), PostgreSQL {version[0]} "
        f"(autovacuum {autovacuum[0]}, synchronous_commit {commit[0]})"
    )


def table(rows: list[Row], insert_rate: float) -> Table:
    """Every system's rates (and their ratio to the raw INSERT + COMMIT rate) and latency."""
    out = Table(title="kashq (database connection) and the PostgreSQL queues")
    out.add_column("system")
    for figure in FIGURES:
        out.add_column(f"{HEADERS[figure]}\njobs/s (x raw)", justify="right")
    out.add_column("idle latency\np50", justify="right")
    out.add_column("\np99", justify="right")
    for row in rows:
        name = row.name
        first_error = next(iter(row.errors.values()), None)
        if first_error:
            name += f"\n[red]{escape(first_error[:48])}[/red]"
        cells = []
        for figure in FIGURES:
            rate = row.median(figure)
            failed = figure in row.errors or "setup" in row.errors or rate is None
            cells.append("[red]failed[/red]" if failed else _rate(rate, insert_rate))
        latency = ["[red]failed[/red]"] * 2 if row.p50_ms is None else []
        if row.p50_ms is not None and row.p99_ms is not None:
            latency = [f"{row.p50_ms:.1f} ms", f"{row.p99_ms:.1f} ms"]
        out.add_row(name, *cells, *latency)
    out.caption = (
        "(x raw) = ratio to the raw single-row INSERT + COMMIT rate measured in the same run; "
        "drains: 10% to 90% done, counted by the jobs; latency: send → handler starts"
    )
    return out


def _rate(rate: float | None, raw: float) -> str:
    return "—" if rate is None else f"{rate:,.0f} ({rate / raw:.2f}x)"


if __name__ == "__main__":
    main()
