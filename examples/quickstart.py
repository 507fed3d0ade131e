"""kashq in one file: define jobs, dispatch a batch, and watch two workers run it.

Run it with ``python examples/quickstart.py``. It uses the default connection:
the embedded SQLite database (``kashq.sqlite`` in the working directory,
created on first use), and starts two worker threads in this process. One job
fails on purpose: watch it retried with linear backoff (1 s, then 2 s) and land
in the ``failed_jobs`` table.
"""

from __future__ import annotations

import logging
import sys
import time

import kashq
from kashq import Job


class SendWelcomeEmail(Job):
    user_id: int
    email: str

    queue = "emails"

    def handle(self) -> None:
        print(f"  sent welcome email to {self.email} (user {self.user_id})")


class ChargeCard(Job):
    order_id: int
    tries = 3  # attempt 1 → wait 1 s → attempt 2 → wait 2 s → attempt 3

    def handle(self) -> None:
        print(f"  charging order {self.order_id}, attempt {self.attempts()} ... declined")
        raise RuntimeError(f"card declined for order {self.order_id}")

    def failed(self, error: BaseException) -> None:
        print(f"  ChargeCard.failed(): giving up on order {self.order_id}: {error}")


def wait_until_idle(queues: tuple[str, ...]) -> None:
    driver = kashq.manager().connection()
    while any(size.total for size in driver.sizes(queues).values()):
        time.sleep(0.05)


def main() -> None:
    logging.basicConfig(stream=sys.stdout, format="  [%(levelname)s] %(message)s")
    logging.getLogger("kashq").setLevel(logging.INFO)  # show retries and failures
    queues = ("emails", "default")

    print("Dispatching 5 welcome emails and 1 card charge that will fail ...")
    kashq.dispatch_many(
        [SendWelcomeEmail(user_id=i, email=f"user{i}@example.com") for i in range(1, 6)]
    )
    ChargeCard(order_id=42).with_metadata(customer="c-7").dispatch()

    print("Starting 2 workers on queues emails, default:")
    worker = kashq.start_workers(2, queues=queues, sleep_s=0.1)
    wait_until_idle(queues)
    worker.stop()

    stats = worker.stats
    print(f"\nDone: {stats.completed} completed, {stats.retried} retried, {stats.failed} failed.")
    for failed in kashq.failed_jobs().all():
        print(
            f"Failed job #{failed.id}: {failed.job_type} on '{failed.queue}' after "
            f"{failed.attempts} attempts: {failed.error}"
        )


if __name__ == "__main__":
    main()
