"""How long each dashboard page takes to render with a million jobs queued and 100,000 failed.

    python benchmarks/dashboard.py [--jobs N] [--failed F] [--runs R] [--only sqlite,postgres,redis]

For each connection (SQLite, PostgreSQL, a private ``redis-server``), in one
process: N jobs are pushed onto three queues (a tenth of them delayed, a
tenth tagged), F records written to ``failed_jobs`` and a day of metrics
history for three queues and five job types. Then every screen is rendered R
times through the dashboard itself (no HTTP server: what is measured is the
dashboard's own work, its queries included), and the median and the slowest
render are printed in milliseconds, beside the raw limit of the same backend:
one ``SELECT 1`` or one ``PING`` round trip. The databases are analyzed (and
PostgreSQL vacuumed) after the bulk load, as autovacuum would have done on a
live queue.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
from common import private_redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, insert, text

from kashq import QueueManager
from kashq.config import load_settings
from kashq.dashboard.core import Dashboard
from kashq.dashboard.http import Request
from kashq.db import migrate
from kashq.db.schema import tables
from kashq.envelope import Envelope, new_job_id
from kashq.history import MinuteFigures

console = Console(width=120)
POSTGRES = os.environ.get(
    "KASHQ_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/test"
)
QUEUES = ("emails", "billing", "reports")
TYPES = ("app.SendEmail", "app.Charge", "app.Report", "app.Resize", "app.Sync")


@contextmanager
def connection(kind: str, tmp: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The settings of ``kind`` on a fresh store, and the raw round trip's URL."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bench.sqlite'}"
        migrate.upgrade(url)
        yield {"connection": "database", "database_url": url}, url
    elif kind == "postgres":
        schema = f"kashq_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        migrate.upgrade(url)
        try:
            yield {"connection": "database", "database_url": url}, url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    else:
        with private_redis() as redis_url:
            failed = f"sqlite:///{tmp / 'failed.sqlite'}"
            migrate.upgrade(failed)
            yield {"connection": "redis", "redis_url": redis_url, "database_url": failed}, redis_url


def seed(manager: QueueManager, jobs: int, failed: int) -> str:
    """Push ``jobs`` jobs, log ``failed`` failures and a day of history; returns a job id."""
    driver = manager.connection()
    now = time.time()
    sample = ""
    for start in range(0, jobs, 1000):
        batch = []
        for i in range(start, min(start + 1000, jobs)):
            later = i % 10 == 0
            env = Envelope(
                id=new_job_id(), type=TYPES[i % len(TYPES)], queue=QUEUES[i % len(QUEUES)],
                payload={"n": i, "email": f"user{i}@example.com"}, created_at=now,
                available_at=now + 3600 if later else now, tags=(f"user:{i % 1000}",)
                if i % 10 == 1 else (),
            )  # fmt: skip
            batch.append(env)
        driver.push_many(batch)
        sample = batch[-1].id
    store = manager.failed_store()
    table = tables(manager.settings.table_prefix).failed_jobs
    engine = create_engine(manager.settings.database_url)
    failed_at = datetime.now(timezone.utc)
    with engine.begin() as conn:
        for start in range(0, failed, 5000):
            rows = [
                {
                    "uuid": new_job_id(), "connection": manager.settings.connection,
                    "queue": QUEUES[i % len(QUEUES)], "job_type": TYPES[i % len(TYPES)],
                    "payload": json.dumps({"n": i}), "error": f"RuntimeError: failure {i % 50}",
                    "exception": "Traceback (most recent call last):\n  ...\n" * 5, "attempts": 3,
                    "failed_at": failed_at - timedelta(seconds=i), "host": "bench", "pid": 1,
                    "reason": "tries_exhausted",
                }
                for i in range(start, min(start + 5000, failed))
            ]  # fmt: skip
            conn.execute(insert(table), rows)
    engine.dispose()
    assert store.count() == failed
    minute = int(now // 60)
    history = manager.history()
    for back in range(0, 1440, 60):
        history.add([
            MinuteFigures(minute - m, q, t, done=50, failed=1, runs=51, run_ms=510.0,
                          run_max_ms=30.0, waits=51, wait_ms=255.0, wait_max_ms=12.0)
            for m in range(back, back + 60) for q in QUEUES for t in TYPES
        ])  # fmt: skip
    return sample


def settle(url: str, kind: str) -> None:
    """Vacuum and analyze the freshly filled tables, as autovacuum would on a live queue
    (a bulk load leaves no statistics and no visibility map: the planner then guesses)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE" if kind == "postgres" else "ANALYZE"))
    engine.dispose()


def screens(job_id: str) -> list[str]:
    return [
        "/", "/queues", "/queues?range=day", "/jobs?state=ready", "/jobs?state=delayed",
        "/jobs?state=ready&queue=billing&tag=user:7", "/jobs?state=ready&type=app.Charge",
        f"/jobs/{job_id}", "/failed", "/failed?queue=billing", "/failed?error=failure%2042",
        "/failed?type=app.Report", "/batches", "/schedules", "/metrics", "/metrics?range=day",
        "/metrics?range=day&by=type",
    ]  # fmt: skip


def render_ms(dash: Dashboard, path: str, runs: int) -> tuple[float, float]:
    bare, _, query = path.partition("?")
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        response = dash(Request("GET", bare, query_string=query, client="127.0.0.1"))
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, (path, response.status, response.body[:300])
    times = times[1:]  # the first render warms caches and connections
    return statistics.median(times), max(times)


def raw_ms(kind: str, url: str) -> float:
    times = []
    if kind == "redis":
        client = redis.Redis.from_url(url)
        for _ in range(200):
            started = time.perf_counter()
            client.ping()
            times.append(time.perf_counter() - started)
    else:
        engine = create_engine(url)
        with engine.connect() as conn:
            for _ in range(200):
                started = time.perf_counter()
                conn.execute(text("SELECT 1")).scalar()
                times.append(time.perf_counter() - started)
        engine.dispose()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="sqlite,postgres,redis")
    args = parser.parse_args()
    kinds = args.only.split(",")
    results: dict[str, list[tuple[float, float]]] = {}
    raws: dict[str, float] = {}
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp, connection(kind, Path(tmp)) as (settings, url):
            manager = QueueManager(load_settings(**settings))
            started = time.perf_counter()
            sample = seed(manager, args.jobs, args.failed)
            console.print(f"{kind}: seeded in {time.perf_counter() - started:.0f} s")
            if kind != "redis":
                settle(url, kind)
            dash = Dashboard(manager)
            results[kind] = [render_ms(dash, path, args.runs) for path in screens(sample)]
            raws[kind] = raw_ms(kind, url)
            manager.close()
    table = Table(title=f"dashboard renders, ms (median / slowest of {args.runs}): "
                        f"{args.jobs:,} jobs queued, {args.failed:,} failed")  # fmt: skip
    table.add_column("page")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for index, path in enumerate(screens("<id>")):
        cells = [f"{results[k][index][0]:.1f} / {results[k][index][1]:.1f}" for k in kinds]
        table.add_row(path, *cells)
    table.add_row("raw round trip", *(f"{raws[k]:.3f}" for k in kinds))
    console.print(table)


if __name__ == "__main__":
    main()
