"""What a process pays to load kashq: a ``queue:work`` worker process, and a dispatcher.

    python benchmarks/footprint.py [--runs N]

- **worker process**: the real ``kashq queue:work --workers=1`` on a private
  ``redis-server`` runs a job that reports, from inside its worker process, how
  many modules are loaded (all, and kashq's own), whether typer and the CLI
  are among them, and the resident memory (``/proc/self/statm``);
- **worker import**: the time ``python -c`` takes to import the worker-process
  entry point (``kashq.supervisor.child``), as each worker process does at
  start, and the modules it loads;
- **dispatcher**: a process that configures the Redis connection and
  dispatches one job (a web app's share): modules loaded, whether the worker
  and prometheus-client came with it, resident memory.

Medians of ``--runs`` runs (default 5). Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import uuid

import redis
from common import private_redis
from rich.console import Console
from rich.table import Table
from workers import HERE, kashq_env, start_work, stop

console = Console(width=110)

_IMPORT_CHILD = """
import sys, time
t = time.perf_counter()
import kashq.supervisor.child
elapsed = time.perf_counter() - t
with open("/proc/self/statm", "rb") as statm:
    import os
    rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
print(elapsed, len(sys.modules), "typer" in sys.modules, rss)
"""

_DISPATCH = """
import os, sys
import bench_jobs
import kashq
kashq.configure(connection="redis")
bench_jobs.Noop().dispatch()
with open("/proc/self/statm", "rb") as statm:
    rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
loaded = lambda name: name in sys.modules
print(len(sys.modules), loaded("kashq.worker.worker"), loaded("prometheus_client"), rss)
"""


def worker_process(url: str) -> dict[str, float]:
    """What the worker process of a real ``queue:work`` reports from inside a job."""
    import bench_jobs

    from kashq import QueueManager
    from kashq.config import load_settings

    prefix = f"footprint-{uuid.uuid4().hex[:8]}"
    env = kashq_env(url, prefix)
    manager = QueueManager(load_settings(connection="redis", redis_url=url, prefix=prefix))
    client = redis.Redis.from_url(url)
    proc = start_work(env, "--workers", "1")
    try:
        manager.dispatch(bench_jobs.Footprint())
        popped = client.blpop([env["BENCH_LATENCY_KEY"]], 60)
        assert popped is not None, "the worker did not run the job"
        return dict(json.loads(popped[1]))
    finally:
        stop(proc)
        manager.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    mib = 1024 * 1024
    table = Table(title=f"kashq footprint (medians of {args.runs})")
    for column in ("process", "modules", "kashq modules", "typer", "worker", "prometheus",
                   "RSS MiB", "import ms"):  # fmt: skip
        table.add_column(column, justify="right")
    with private_redis() as url:
        reports = [worker_process(url) for _ in range(args.runs)]
        table.add_row(
            "queue:work worker process",
            f"{statistics.median(r['modules'] for r in reports):.0f}",
            f"{statistics.median(r['kashq'] for r in reports):.0f}",
            "yes" if any(r["typer"] for r in reports) else "no",
            "yes", "yes",
            f"{statistics.median(r['rss'] for r in reports) / mib:.1f}",
            "",
        )  # fmt: skip
        imports = [_run([sys.executable, "-c", _IMPORT_CHILD]) for _ in range(args.runs)]
        table.add_row(
            "worker import (entry point)",
            f"{statistics.median(float(r[1]) for r in imports):.0f}",
            "",
            "yes" if any(r[2] == "True" for r in imports) else "no",
            "", "",
            f"{statistics.median(float(r[3]) for r in imports) / mib:.1f}",
            f"{statistics.median(float(r[0]) for r in imports) * 1000:.0f}",
        )  # fmt: skip
        env_url = {"KASHQ_REDIS_URL": url, "KASHQ_PREFIX": f"footprint-{uuid.uuid4().hex[:8]}"}
        dispatches = [_run([sys.executable, "-c", _DISPATCH], env_url) for _ in range(args.runs)]
        table.add_row(
            "configure + one dispatch",
            f"{statistics.median(float(r[0]) for r in dispatches):.0f}",
            "",
            "",
            "yes" if any(r[1] == "True" for r in dispatches) else "no",
            "yes" if any(r[2] == "True" for r in dispatches) else "no",
            f"{statistics.median(float(r[3]) for r in dispatches) / mib:.1f}",
            "",
        )  # fmt: skip
    console.print(table)


def _run(command: list[str], env: dict[str, str] | None = None) -> list[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KASHQ_")}
    full_env.update(env or {})
    out = subprocess.run(
        command, cwd=HERE, env=full_env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


if __name__ == "__main__":
    main()
