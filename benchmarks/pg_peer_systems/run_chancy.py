"""Chancy on PostgreSQL: the app ``chancy worker start`` loads, and its client.

Async jobs on queue ``bench``, run by Chancy's ``AsyncExecutor`` (in the
worker's event loop), declared by ``prepare C`` with concurrency C per worker,
eager polling (fetch again as soon as a job ends) and a 1 s polling interval
(new jobs also wake the worker by LISTEN/NOTIFY). Chancy's default plugins stay
on; its logger is set to WARNING (it logs a line per job pulled at INFO).
enqueue: ``await app.push(noop.job.with_kwargs())`` per job; bulk: ``app.push_many``
(one transaction per 1,000 jobs, its default).
"""

from __future__ import annotations

import logging
import os

from chancy import Chancy, Queue, job
from chancy.app import setup_default_logger

from pg_peer_systems import probe

app = Chancy(os.environ.get("BENCH_PG_URL", ""), log=setup_default_logger(logging.WARNING))


@job(queue="bench")
async def noop() -> None:
    probe.done()


@job(queue="bench")
async def stamp(*, sent: float) -> None:
    probe.stamp(sent)


class Client:
    async def open(self) -> None:
        await app.__aenter__()

    async def enqueue(self, n: int) -> None:
        for _ in range(n):
            await app.push(noop.job.with_kwargs())

    async def bulk(self, n: int) -> None:
        async for _ in app.push_many([noop.job.with_kwargs() for _ in range(n)]):
            pass

    async def stamp(self, sent: float) -> None:
        await app.push(stamp.job.with_kwargs(sent=sent))

    async def prepare(self, setting: int) -> None:
        queue = Queue(
            "bench", concurrency=setting, executor=Chancy.Executor.Async,
            polling_interval=1, eager_polling=True,
        )  # fmt: skip
        await app.declare(queue, upsert=True)

    async def close(self) -> None:
        await app.__aexit__(None, None, None)
