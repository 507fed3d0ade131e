"""Does a long drain stay steady on the databases? 100,000 jobs in a row, autovacuum off.

    python benchmarks/database_drain.py [--jobs N] [--only sqlite,postgres,mariadb]

For each database, a fresh one: PostgreSQL (``KASHQ_BENCH_POSTGRES_ADMIN_URL``,
default ``postgresql://postgres@127.0.0.1/postgres``) gets a new database with
autovacuum off for the jobs table; MariaDB (``KASHQ_BENCH_MYSQL_ADMIN_URL``,
default ``mysql://root@127.0.0.1/``) a new database; SQLite a new file. N no-op
jobs are queued with ``dispatch_many`` (no ``ANALYZE`` afterwards: a queue filled
in one go has no fresh statistics), then one worker (one consumer thread, the
default prefetch) drains them, stopping when the queue is empty. Each job's end
is timed by the worker's event hook, and the drain is cut into tenths: the rate of
each tenth shows whether finished jobs (deleted rows, dead index entries) slow
the claims that follow. The jobs table's dead rows (PostgreSQL's
``n_dead_tup``) are shown at the end. The raw limit, measured in the same run, is
the database's own ``SELECT 1`` round trips per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, make_url, text

import kashq
from kashq import Job, QueueManager
from kashq.db import migrate
from kashq.jobevents import EventKind

console = Console(width=150)
PIECES = 10


class Noop(Job):
    def handle(self) -> None:
        pass


@contextmanager
def postgres() -> Iterator[str]:
    admin = os.environ.get(
        "KASHQ_BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres"
    )
    name = f"kashq_drain_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        db = create_engine(url)
        with db.begin() as conn:
            conn.execute(text("ALTER TABLE kashq_jobs SET (autovacuum_enabled = false)"))
        db.dispose()
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


@contextmanager
def mariadb() -> Iterator[str]:
    admin = os.environ.get("KASHQ_BENCH_MYSQL_ADMIN_URL", "mysql+pymysql://root@127.0.0.1/")
    name = f"kashq_drain_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@contextmanager
def sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="kashq-drain-") as folder:
        yield f"sqlite:///{folder}/queue.db"


DATABASES: dict[str, Callable[[], contextmanager]] = {  # type: ignore[valid-type]
    "sqlite": sqlite,
    "postgres": postgres,
    "mariadb": mariadb,
}


def round_trips(url: str, n: int = 2_000) -> float:
    engine = create_engine(url)
    with engine.connect() as conn:
        started = time.perf_counter()
        for _ in range(n):
            conn.execute(text("SELECT 1")).scalar()
        elapsed = time.perf_counter() - started
    engine.dispose()
    return n / elapsed


def dead_rows(url: str) -> str:
    if not url.startswith("postgresql"):
        return "-"
    engine = create_engine(url)
    with engine.connect() as conn:
        dead = conn.execute(
            text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'kashq_jobs'")
        ).scalar()
    engine.dispose()
    return f"{dead:,}"


def drain(url: str, jobs: int) -> tuple[list[float], float, str]:
    """Queue ``jobs``, drain them with one worker; the rate of each tenth, overall, dead rows."""
    manager = QueueManager(kashq.Settings(connection="database", database_url=url))
    try:
        for start in range(0, jobs, 10_000):
            manager.dispatch_many([Noop() for _ in range(min(10_000, jobs - start))])
        ends: list[float] = []
        worker = manager.worker(stop_when_empty=True)
        worker.add_listener(
            lambda event: event.kind is EventKind.COMPLETED and ends.append(time.perf_counter())
        )
        started = time.perf_counter()
        worker.run(1)
        total = len(ends) / (ends[-1] - started)
        piece = len(ends) // PIECES
        rates = []
        for i in range(PIECES):
            first, last = ends[i * piece], ends[min((i + 1) * piece, len(ends) - 1)]
            rates.append(piece / (last - first))
        return rates, total, dead_rows(url)
    finally:
        manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--only", default="sqlite,postgres,mariadb")
    args = parser.parse_args()
    table = Table(title=f"kashq: {args.jobs:,} no-op jobs drained by one worker, autovacuum off")
    table.add_column("database")
    for i in range(PIECES):
        table.add_column(f"{i + 1}/{PIECES}", justify="right")
    for name in ("whole", "last/first", "dead rows", "SELECT 1/s"):
        table.add_column(name, justify="right")
    for name in args.only.split(","):
        with DATABASES[name]() as url:
            raw = round_trips(url)
            rates, total, dead = drain(url, args.jobs)
        table.add_row(
            name,
            *(f"{r:,.0f}" for r in rates),
            f"{total:,.0f}",
            f"{rates[-1] / rates[0]:.2f}",
            dead,
            f"{raw:,.0f}",
        )
        console.print(f"{name}: done (median tenth {statistics.median(rates):,.0f}/s)")
    console.print(table)
    console.print("Rates are jobs/s within each tenth of the drain, timed by the jobs' ends.")


if __name__ == "__main__":
    main()
