"""Jobs for benchmarks/workers.py, imported by its ``queue:work`` processes."""

from __future__ import annotations

import os
import time

import redis

from kashq import Job

_client: redis.Redis | None = None


class Noop(Job):
    def handle(self) -> None:
        pass


class Stamp(Job):
    """Reports how long after its dispatch ``handle()`` started (wall clock, one machine)."""

    sent: float

    def handle(self) -> None:
        started = time.time()
        global _client
        if _client is None:
            _client = redis.Redis.from_url(os.environ["KASHQ_REDIS_URL"])
        _client.rpush(os.environ["BENCH_LATENCY_KEY"], started - self.sent)


class Footprint(Job):
    """Reports what the worker process running it has loaded: modules, typer, resident memory."""

    def handle(self) -> None:
        import json
        import sys

        with open("/proc/self/statm", "rb") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        global _client
        if _client is None:
            _client = redis.Redis.from_url(os.environ["KASHQ_REDIS_URL"])
        report = {
            "modules": len(sys.modules),
            "kashq": sum(1 for m in sys.modules if m == "kashq" or m.startswith("kashq.")),
            "typer": "typer" in sys.modules,
            "cli": "kashq.cli" in sys.modules,
            "rss": rss,
        }
        _client.rpush(os.environ["BENCH_LATENCY_KEY"], json.dumps(report))
