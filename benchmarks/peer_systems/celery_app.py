"""Celery with its Redis transport, results ignored, no gossip, mingle or heartbeat."""

import os

from celery import Celery

from peer_systems import probe

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,
    task_default_queue="bench",
    worker_prefetch_multiplier=64,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task
def noop() -> None:
    probe.done()


@app.task
def incr() -> None:
    probe.incr()
    probe.done()


@app.task
def stamp(sent: float) -> None:
    probe.stamp(sent)
