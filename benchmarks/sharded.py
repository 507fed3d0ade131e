"""Dispatch and drain through the ``sharded`` connection (3 Redis servers) beside one Redis.

    python benchmarks/sharded.py [--jobs N] [--quick]

Starts three private ``redis-server`` processes (needs them on PATH), then
measures with no-op jobs, for one Redis and for each sharding strategy over the
three: enqueue jobs/s with one ``dispatch()`` per job, ``dispatch_many`` jobs/s,
drain jobs/s with one worker thread, and idle latency (dispatch → ``handle()``).
The raw redis-py round-trip rate is measured in the same run; every figure is
also printed as a ratio to it. Medians of 3 runs (1 with ``--quick``).
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack

from common import private_redis, raw_round_trips
from rich.console import Console
from throughput import bench_all, parse_size, results_table

import kashq

console = Console(width=110)


def main() -> None:
    size = parse_size(__doc__.splitlines()[0])
    with ExitStack() as stack:
        urls = [stack.enter_context(private_redis()) for _ in range(3)]
        raw = raw_round_trips(urls[0], size.n)
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        connections = {
            "redis (1 server)": kashq.load_settings(
                connection="redis", redis_url=urls[0], prefix=prefix
            ),
        }
        for strategy in ("hash", "round_robin", "least_loaded"):
            connections[f"sharded x3, {strategy}"] = kashq.load_settings(
                connection="sharded", shards=urls, shard_strategy=strategy, prefix=prefix
            )
        results = bench_all(connections, size)

    title = (
        f"kashq sharding, {size.n:,} no-op jobs, one worker thread, median of {size.runs} run(s)"
    )
    console.print(results_table(title, "connection", results, raw, with_ratio=None))
    console.print("Ratios are to the raw redis-py round-trip rate (LPUSH, RPOP, 1 connection).")


if __name__ == "__main__":
    main()
