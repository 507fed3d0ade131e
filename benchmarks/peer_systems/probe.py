"""What every benchmark job calls: completion counts and latency stamps, the same for each system.

``done()`` counts a finished job in a per-process 8-byte file under
``BENCH_PROBE_DIR``, written through ``mmap`` (a memory write, no system call and
no Redis command), so the parent reads progress without adding load on Redis.
``incr()`` is the realistic job's own work: one ``INCR`` of ``INCR_KEY`` on the
system's database (``BENCH_REDIS_URL``), through one redis-py client per process,
created on first use. ``stamp(sent)`` pushes "handler started - ``sent``" to
``BENCH_LATENCY_KEY`` through the same client.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from pathlib import Path

import redis

_lock = threading.Lock()
_pid = 0
_map: mmap.mmap | None = None
_count = 0
_client: redis.Redis | None = None
_client_pid = 0

INCR_KEY = "bench-incr"


def done() -> None:
    """Counts one finished job of this process (thread-safe; a forked child starts its own)."""
    global _pid, _map, _count
    with _lock:
        if _map is None or _pid != os.getpid():
            path = Path(os.environ["BENCH_PROBE_DIR"]) / str(os.getpid())
            path.write_bytes(b"\0" * 8)
            with path.open("r+b") as f:
                _pid, _map, _count = os.getpid(), mmap.mmap(f.fileno(), 8), 0
        _count += 1
        struct.pack_into("q", _map, 0, _count)


def incr() -> None:
    """One ``INCR`` on the benchmark server: what the realistic job does before ``done()``."""
    _redis().execute_command("INCR", INCR_KEY)  # redis-py's incr() sends INCRBY


def stamp(sent: float) -> None:
    """Reports how long after ``sent`` (``time.time()``) this handler started."""
    started = time.time()
    _redis().rpush(os.environ["BENCH_LATENCY_KEY"], started - sent)


def _redis() -> redis.Redis:
    """This process's client, shared by its threads (redis-py pools connections).

    A forked child makes its own."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        with _lock:
            if _client is None or _client_pid != os.getpid():
                _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
                _client_pid = os.getpid()
    return _client


def total(probe_dir: Path) -> dict[int, int]:
    """Jobs done so far, by worker process id."""
    counts = {}
    for entry in os.scandir(probe_dir):
        with open(entry.path, "rb") as f:
            data = f.read(8)
        if len(data) == 8:
            counts[int(entry.name)] = struct.unpack("q", data)[0]
    return counts
