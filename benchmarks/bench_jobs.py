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
