"""Huey with its Redis storage (blocking pops), results off."""

import os

from huey import RedisHuey

from peer_systems import probe

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def noop() -> None:
    probe.done()


@huey.task()
def incr() -> None:
    probe.incr()
    probe.done()


@huey.task()
def stamp(sent: float) -> None:
    probe.stamp(sent)
