"""What the benchmarks share: a private ``redis-server`` and the raw redis-py round-trip rate."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis


@contextmanager
def private_redis() -> Iterator[str]:
    url = os.environ.get("KASHQ_BENCH_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH; set KASHQ_BENCH_REDIS_URL instead")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="kashq-bench-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def raw_round_trips(url: str, n: int) -> float:
    """Round trips/s of one LPUSH + one RPOP per item: median of 3 runs after a warm-up."""
    client = redis.Redis.from_url(url)
    key = f"bench-raw-{uuid.uuid4().hex}"

    def one_run(count: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            client.lpush(key, i)
            client.rpop(key)
        return 2 * count / (time.perf_counter() - started)

    one_run(min(n, 1000))
    return statistics.median(one_run(n) for _ in range(3))


def p50_p99_ms(latencies_s: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile of ``latencies_s``, in milliseconds."""
    ordered = sorted(latencies_s)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3
