"""What every job of ``benchmarks/pg_peers.py`` calls, in every system's venv (standard library).

``done()`` counts a finished job in a per-process 8-byte file under
``BENCH_PROBE_DIR``, written through ``mmap`` (a memory write: no system call,
no query), so the parent reads progress without adding load on PostgreSQL.
``stamp(sent)`` appends "handler started - ``sent``" (seconds, ``time.time()``)
as one line to ``BENCH_LATENCY_FILE``; ``read_stamps()`` reads them back.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from pathlib import Path

_lock = threading.Lock()
_pid = 0
_map: mmap.mmap | None = None
_count = 0


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


def total(probe_dir: Path) -> int:
    """Jobs done so far by every worker process."""
    done_so_far = 0
    for entry in os.scandir(probe_dir):
        with open(entry.path, "rb") as f:
            data = f.read(8)
        if len(data) == 8:
            done_so_far += struct.unpack("q", data)[0]
    return done_so_far


def stamp(sent: float) -> None:
    """Reports how long after ``sent`` (``time.time()``) this handler started."""
    started = time.time()
    line = f"{started - sent:.6f}\n".encode()
    fd = os.open(os.environ["BENCH_LATENCY_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one write of one short line: appended whole
    finally:
        os.close(fd)


def read_stamps() -> list[float]:
    """The latencies reported so far to ``BENCH_LATENCY_FILE``, in order."""
    path = Path(os.environ["BENCH_LATENCY_FILE"])
    return [float(line) for line in path.read_text().splitlines()] if path.exists() else []
