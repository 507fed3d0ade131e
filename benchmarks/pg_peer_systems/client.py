"""The client side of every system: one measurement, printed as one JSON line.

    python -m pg_peer_systems.client SYSTEM enqueue N | bulk N | latency SAMPLES | prepare SETTING

It runs in the system's own venv (standard library only here) and drives the
``Client`` of ``run_<SYSTEM>.py``, the module its workers import too (so its
jobs are named after that module, never ``__main__``). The client's
connections are opened (``open()``: connect, one query where the API allows)
before any clock starts, and closed after it stops.

- ``enqueue N``: ``{"seconds": s}`` from before the first of N calls of the
  system's one-job API (each call builds its job) to after the last returns;
- ``bulk N``: ``{"seconds": s}`` from before the N jobs are built to after the
  system's bulk API has sent them all;
- ``latency SAMPLES``: one stamped job first, waited for up to 60 s (the worker
  is ready once it has run it), then SAMPLES times: a 20 ms pause (the worker
  is idle), ``time.time()`` read just before the enqueue call of one job that
  carries it, and a wait until the job reports; ``{"latencies_s": [...]}`` are
  what the jobs reported (handler start - send time), the warm-up left out;
- ``prepare SETTING``: the system's own set-up after its schema command, if
  any (Chancy declares its queue with concurrency SETTING).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from typing import Protocol

from pg_peer_systems import probe


class Client(Protocol):
    """How one system enqueues; every method may block or await, as the system does."""

    async def open(self) -> None: ...

    async def enqueue(self, n: int) -> None: ...

    async def bulk(self, n: int) -> None: ...

    async def stamp(self, sent: float) -> None: ...

    async def prepare(self, setting: int) -> None: ...

    async def close(self) -> None: ...


def main() -> None:
    system, action = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    client: Client = importlib.import_module(f"pg_peer_systems.run_{system}").Client()
    print(json.dumps(asyncio.run(_run(client, action, count))))


async def _run(client: Client, action: str, count: int) -> dict[str, object]:
    await client.open()
    try:
        if action == "prepare":
            await client.prepare(count)
            return {}
        if action == "latency":
            return {"latencies_s": await _latency(client, count)}
        send = {"enqueue": client.enqueue, "bulk": client.bulk}[action]
        started = time.perf_counter()
        await send(count)
        return {"seconds": time.perf_counter() - started}
    finally:
        await client.close()


async def _latency(client: Client, samples: int) -> list[float]:
    await client.stamp(time.time())
    await _wait_stamps(1, timeout_s=60)
    for i in range(samples):
        await asyncio.sleep(0.02)
        await client.stamp(time.time())
        await _wait_stamps(i + 2, timeout_s=10)
    return probe.read_stamps()[1:]


async def _wait_stamps(count: int, timeout_s: float) -> None:
    """Returns once ``count`` stamped jobs have reported (looked at every millisecond)."""
    deadline = time.monotonic() + timeout_s
    while len(probe.read_stamps()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker ran no stamped job within {timeout_s:.0f} s")
        await asyncio.sleep(0.001)


if __name__ == "__main__":
    main()
