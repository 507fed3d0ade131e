"""taskiq with taskiq-redis's list-queue broker (BRPOP), no result backend."""

import os

from taskiq_redis import ListQueueBroker

from peer_systems import probe

broker = ListQueueBroker(os.environ["BENCH_REDIS_URL"], queue_name="bench")


@broker.task
async def noop() -> None:
    probe.done()


@broker.task
async def incr() -> None:
    probe.incr()  # blocking, as in every system: the same redis-py call
    probe.done()


@broker.task
async def stamp(sent: float) -> None:
    probe.stamp(sent)
