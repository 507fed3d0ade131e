"""A worker process for fault tests.

python -m tests.faults.worker_main REDIS_URL PREFIX [--lease S] [--concurrency N]
                                   [--failed-db URL] [--queue Q]
"""

from __future__ import annotations

import argparse
import logging

import tests.faults.jobs  # noqa: F401  (registers the job classes)
from kashq import Worker, WorkerOptions
from kashq.drivers.redis import RedisDriver
from kashq.failed.base import FailedJobStore
from kashq.failed.memory import MemoryFailedJobStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("redis_url")
    parser.add_argument("prefix")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--failed-db")
    parser.add_argument("--queue", default="default")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    store: FailedJobStore = MemoryFailedJobStore()
    if args.failed_db:
        from kashq.failed.database import DatabaseFailedJobStore

        store = DatabaseFailedJobStore(args.failed_db)
    options = WorkerOptions(
        connection="redis", queues=(args.queue,), lease_s=args.lease, sleep_s=0.2, backoff_s=0
    )
    Worker(RedisDriver(args.redis_url, prefix=args.prefix), store, options).run(args.concurrency)


if __name__ == "__main__":
    main()
