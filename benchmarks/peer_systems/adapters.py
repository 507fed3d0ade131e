"""One adapter per system: how the parent enqueues, and how its workers are started.

Each adapter is built with the Redis URL of the database it alone uses (the
parent sets ``BENCH_REDIS_URL`` to it first, as the app modules read it on
import), enqueues a job variant by name (``noop``: the job only counts itself
done; ``incr``: one Redis ``INCR`` first, see ``probe``), and names the command
lines of its best configuration on a 2-core machine for 1 and for 2 worker
processes. Every enqueue builds its jobs itself: that is part of what it costs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import ClassVar

import kashq

WORK = [sys.executable, "-m"]


class Peer:
    """A queue system under test; subclasses fill in every method."""

    name: ClassVar[str]
    config: ClassVar[str]
    bulk_label: ClassVar[str | None] = None  # None: no bulk or concurrent enqueue API

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env

    def enqueue(self, job: str, n: int) -> None:
        """Builds and enqueues ``n`` jobs of variant ``job``, one call per job."""
        raise NotImplementedError

    def bulk(self, job: str, n: int) -> None:
        """Builds ``n`` jobs of variant ``job`` and sends them with the bulk API."""
        raise NotImplementedError

    def settle(self) -> None:
        """Finishes what an enqueue left to a background thread of this process, if any."""

    def worker_commands(self, procs: int) -> list[list[str]]:
        """Command lines that together run ``procs`` worker processes."""
        raise NotImplementedError

    def latency_commands(self) -> list[list[str]]:
        return self.worker_commands(1)

    def send_stamp(self, sent: float) -> None:
        """Enqueues one job that reports its start time minus ``sent``."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class Kashq(Peer):
    name = "kashq"
    config = "queue:work --workers=1|2, events + metrics on"
    bulk_label = "dispatch_many"

    def __init__(self, url: str, env: dict[str, str]) -> None:
        import workers

        from peer_systems import kashq_jobs

        self.jobs = kashq_jobs
        self.work_command = workers.work_command
        super().__init__(url, {**workers.kashq_env(url, "bench"), **env})
        settings = kashq.load_settings(connection="redis", redis_url=url, prefix="bench")
        self.manager = kashq.QueueManager(settings)

    def enqueue(self, job: str, n: int) -> None:
        job_class = self.jobs.JOBS[job]
        for _ in range(n):
            self.manager.dispatch(job_class())

    def bulk(self, job: str, n: int) -> None:
        job_class = self.jobs.JOBS[job]
        self.manager.dispatch_many([job_class() for _ in range(n)])

    def settle(self) -> None:
        recorder = self.manager.recorder()  # writes "dispatched" events every 50 ms
        if recorder is not None:
            recorder.flush()

    def worker_commands(self, procs: int) -> list[list[str]]:
        return [self.work_command("--workers", str(procs), module="peer_systems.kashq_jobs")]

    def latency_commands(self) -> list[list[str]]:
        args = ("--workers", "1", "--sleep", "5")
        return [self.work_command(*args, module="peer_systems.kashq_jobs")]

    def send_stamp(self, sent: float) -> None:
        self.manager.dispatch(self.jobs.Stamp(sent=sent))

    def close(self) -> None:
        self.manager.close()


class Taskiq(Peer):
    name = "taskiq"
    config = "ListQueueBroker, --workers=1|2 (async, defaults)"
    bulk_label = "asyncio.gather, 500 at a time"

    def __init__(self, url: str, env: dict[str, str]) -> None:
        super().__init__(url, env)
        from peer_systems import taskiq_app

        self.app = taskiq_app
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(taskiq_app.broker.startup())

    def enqueue(self, job: str, n: int) -> None:
        task = getattr(self.app, job)

        async def send() -> None:
            for _ in range(n):
                await task.kiq()

        self.loop.run_until_complete(send())

    def bulk(self, job: str, n: int) -> None:
        task = getattr(self.app, job)

        async def send() -> None:
            for start in range(0, n, 500):
                await asyncio.gather(*(task.kiq() for _ in range(min(500, n - start))))

        self.loop.run_until_complete(send())

    def worker_commands(self, procs: int) -> list[list[str]]:
        app = "peer_systems.taskiq_app:broker"
        return [[*WORK, "taskiq", "worker", app, "--workers", str(procs), "--log-level", "WARNING"]]

    def send_stamp(self, sent: float) -> None:
        self.loop.run_until_complete(self.app.stamp.kiq(sent))

    def close(self) -> None:
        self.loop.run_until_complete(self.app.broker.shutdown())
        self.loop.close()


class Huey(Peer):
    name = "huey"
    config = "RedisHuey, 1 proc x 4 threads | 2 processes"

    def __init__(self, url: str, env: dict[str, str]) -> None:
        super().__init__(url, env)
        from peer_systems import huey_app

        self.app = huey_app

    def enqueue(self, job: str, n: int) -> None:
        task = getattr(self.app, job)
        for _ in range(n):
            task()

    def worker_commands(self, procs: int) -> list[list[str]]:
        kind = ["-k", "thread", "-w", "4"] if procs == 1 else ["-k", "process", "-w", str(procs)]
        consumer = [*WORK, "huey.bin.huey_consumer", "peer_systems.huey_app.huey"]
        return [[*consumer, *kind, "-n", "-q"]]

    def send_stamp(self, sent: float) -> None:
        self.app.stamp(sent)


class Dramatiq(Peer):
    name = "dramatiq"
    config = "RedisBroker, --processes=1|2 x --threads=8"

    def __init__(self, url: str, env: dict[str, str]) -> None:
        super().__init__(url, env)
        from peer_systems import dramatiq_app

        self.app = dramatiq_app

    def enqueue(self, job: str, n: int) -> None:
        actor = getattr(self.app, job)
        for _ in range(n):
            actor.send()

    def worker_commands(self, procs: int) -> list[list[str]]:
        args = ["--processes", str(procs), "--threads", "8", "--queues", "bench"]
        return [[*WORK, "dramatiq", "peer_systems.dramatiq_app", *args]]

    def send_stamp(self, sent: float) -> None:
        self.app.stamp.send(sent)

    def close(self) -> None:
        self.app.broker.close()


class Celery(Peer):
    name = "celery"
    config = "Redis transport, 1|2 solo workers, prefetch x64"
    bulk_label = "group().apply_async()"

    def __init__(self, url: str, env: dict[str, str]) -> None:
        super().__init__(url, env)
        from peer_systems import celery_app

        self.app = celery_app

    def enqueue(self, job: str, n: int) -> None:
        task = getattr(self.app, job)
        for _ in range(n):
            task.delay()

    def bulk(self, job: str, n: int) -> None:
        from celery import group

        task = getattr(self.app, job)
        group(task.s() for _ in range(n)).apply_async()

    def worker_commands(self, procs: int) -> list[list[str]]:
        worker = [*WORK, "celery", "-A", "peer_systems.celery_app", "worker", "-P", "solo"]
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
        return [[*worker, *quiet, "-Q", "bench", "-n", f"w{i}@%h"] for i in range(procs)]

    def send_stamp(self, sent: float) -> None:
        self.app.stamp.delay(sent)


class Rq(Peer):
    name = "rq"
    config = "SimpleWorker (no fork per job), 1|2 workers"
    bulk_label = "enqueue_many"

    def __init__(self, url: str, env: dict[str, str]) -> None:
        super().__init__(url, env)
        import redis
        from rq import Queue

        from peer_systems import rq_app

        self.app = rq_app
        self.queue = Queue("bench", connection=redis.Redis.from_url(url))

    def enqueue(self, job: str, n: int) -> None:
        function = getattr(self.app, job)
        for _ in range(n):
            self.queue.enqueue(function)

    def bulk(self, job: str, n: int) -> None:
        function = getattr(self.app, job)
        self.queue.enqueue_many([self.queue.prepare_data(function) for _ in range(n)])

    def worker_commands(self, procs: int) -> list[list[str]]:
        worker = [*WORK, "rq.cli", "worker", "--url", self.url, "--quiet"]
        return [[*worker, "-w", "rq.worker.SimpleWorker", "bench"] for _ in range(procs)]

    def send_stamp(self, sent: float) -> None:
        self.queue.enqueue(self.app.stamp, sent)


PEERS: list[type[Peer]] = [Kashq, Taskiq, Huey, Dramatiq, Celery, Rq]
