"""Dramatiq with its Redis broker and default middleware, no retries."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peer_systems import probe

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    probe.done()


@dramatiq.actor(queue_name="bench", max_retries=0)
def incr() -> None:
    probe.incr()
    probe.done()


@dramatiq.actor(queue_name="bench", max_retries=0)
def stamp(sent: float) -> None:
    probe.stamp(sent)
