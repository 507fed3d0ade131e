"""What a batch costs: dispatching N jobs as one batch, and draining them, beside the same
jobs unbatched, per connection, in one run.

    python benchmarks/batches.py [--jobs N] [--runs R] [--only redis,postgres,...]

For Redis (a private ``redis-server``, or KASHQ_BENCH_REDIS_URL), PostgreSQL, MariaDB
and SQLite: N no-op jobs built and dispatched with ``dispatch_many`` and as
``kashq.batch([...]).then(...).finally_(...)``; then a worker thread (prefetch 8,
events off) drains them, taking turns over R runs. Printed: the medians (dispatch in
ms, drain in jobs/s) and the batch's bookkeeping as a share of the unbatched drain's
time per job (the target is at most 15%), beside the raw Redis round-trip rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from common import private_redis, raw_round_trips
from results import MARIADB, POSTGRES, manager_for
from rich.console import Console
from rich.table import Table

import kashq
from kashq import QueueManager

console = Console(width=120)


class Row(kashq.Job):
    n: int = 0

    def handle(self) -> None:
        return None


class Done(kashq.Job):
    def handle(self) -> None:
        return None


def plain(manager: QueueManager, n: int) -> None:
    manager.dispatch_many([Row(n=i) for i in range(n)])


def batched(manager: QueueManager, n: int) -> None:
    batch = kashq.batch([Row(n=i) for i in range(n)]).then(Done()).finally_(Done())
    manager.dispatch_batch(batch)


def one_run(
    kind: str, url: str, n: int, tmp: Path, dispatch: Callable[[QueueManager, int], None]
) -> tuple[float, float]:
    """(dispatch seconds, drain jobs/s) of one fresh queue."""
    with manager_for(kind, url, tmp) as manager:
        started = time.perf_counter()
        dispatch(manager, n)
        dispatched_s = time.perf_counter() - started
        worker = manager.worker(stop_when_empty=True, prefetch=8, sleep_s=0.05)
        started = time.perf_counter()
        worker.run(1)
        return dispatched_s, n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="redis,postgres,mariadb,sqlite")
    args = parser.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"kashq-batches-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    table = Table(title=f"batches: {args.jobs} no-op jobs, median of {args.runs} runs each")
    for column in ("connection", "dispatch ms", "batch dispatch ms", "drain jobs/s",
                   "batch drain jobs/s", "bookkeeping"):  # fmt: skip
        table.add_column(column, justify="right" if column != "connection" else "left")
    with private_redis() as redis_url:
        raw = raw_round_trips(redis_url, 5000)
        targets = {
            "redis": redis_url,
            "postgres": POSTGRES,
            "mariadb": MARIADB,
            "sqlite": f"sqlite:///{tmp / 'kashq.sqlite'}",
        }
        for kind in args.only.split(","):
            runs: dict[str, list[tuple[float, float]]] = {"plain": [], "batch": []}
            for _ in range(args.runs):  # taking turns, so both meet the same machine
                runs["plain"].append(one_run(kind, targets[kind], args.jobs, tmp, plain))
                runs["batch"].append(one_run(kind, targets[kind], args.jobs, tmp, batched))
            (d_plain, r_plain), (d_batch, r_batch) = (
                (statistics.median(s for s, _ in runs[k]), statistics.median(r for _, r in runs[k]))
                for k in ("plain", "batch")
            )
            share = r_plain / r_batch - 1  # the extra time per job, over the plain time per job
            table.add_row(
                kind, f"{d_plain * 1000:,.0f}", f"{d_batch * 1000:,.0f}", f"{r_plain:,.0f}",
                f"{r_batch:,.0f}", f"{share:+.1%}",
            )  # fmt: skip
    console.print(table)
    console.print(f"raw redis-py round trips (LPUSH+RPOP pairs): {raw:,.0f}/s")


if __name__ == "__main__":
    main()
