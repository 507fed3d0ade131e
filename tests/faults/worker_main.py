"""A worker process for fault tests.

    python -m tests.faults.worker_main KIND URL [--prefix P] [--lease S] [--concurrency N]
                                       [--failed-db URL] [--queue Q]

KIND is ``redis`` (URL a Redis URL, keys under ``--prefix``) or ``database``
(URL a SQLAlchemy URL).
"""

from __future__ import annotations

import argparse
import logging

import tests.faults.jobs  # noqa: F401  (registers the job classes)
from kashq import Worker, WorkerOptions
from kashq.drivers.base import Driver
from kashq.failed.base import FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("redis", "database"))
    parser.add_argument("url")
    parser.add_argument("--prefix", default="kashq")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--failed-db")
    parser.add_argument("--queue", default="default")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    driver: Driver
    if args.kind == "redis":
        from kashq.drivers.redis import RedisDriver

        driver = RedisDriver(args.url, prefix=args.prefix)
    else:
        from kashq.drivers.database import DatabaseDriver

        driver = DatabaseDriver(args.url, poll_interval_s=0.02)
    store: FailedJobStore = MemoryFailedJobStore()
    if args.failed_db:
        from kashq.failed.database import DatabaseFailedJobStore

        store = DatabaseFailedJobStore(args.failed_db)
    options = WorkerOptions(
        connection=args.kind, queues=(args.queue,), lease_s=args.lease, sleep_s=0.2, backoff=0
    )
    Worker(driver, store, options).run(args.concurrency)


if __name__ == "__main__":
    main()
