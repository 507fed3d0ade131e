"""kashq in one file: define jobs, dispatch a batch, work it with ``kashq queue:work``.

Run it with ``python examples/quickstart.py``. It uses the default connection:
the embedded SQLite database (``kashq.sqlite`` in the working directory,
created on first use). It dispatches five welcome emails and one card charge
that always fails, then runs the two commands you would run yourself::

    kashq queue:work --import examples/quickstart.py --workers 2 --stop-when-empty
    kashq queue:failed

Watch the failing job retried with linear backoff (1 s, then 2 s) and listed
by ``queue:failed``. The worker imports this file (``--import``) to know the
job classes; the ``__main__`` block below only runs when you start the script.
"""

from __future__ import annotations

import os
import subprocess
import sys

import kashq
from kashq import Job


class SendWelcomeEmail(Job):
    user_id: int
    email: str

    queue = "emails"

    def handle(self) -> None:
        print(f"      sent welcome email to {self.email}", flush=True)


class ChargeCard(Job):
    order_id: int
    tries = 3  # attempt 1 → wait 1 s → attempt 2 → wait 2 s → attempt 3

    def handle(self) -> None:
        raise RuntimeError(f"card declined for order {self.order_id}")

    def failed(self, error: BaseException) -> None:
        print(f"      ChargeCard.failed(): telling support about order {self.order_id}", flush=True)


def kashq_command(*args: str) -> None:
    """Run ``kashq ARGS`` as you would in a shell, showing the command first."""
    print(f"\n$ kashq {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "kashq", *args], check=False)


def main() -> None:
    print("Dispatching 5 welcome emails and 1 card charge that will fail ...")
    kashq.dispatch_many(
        [SendWelcomeEmail(user_id=i, email=f"user{i}@example.com") for i in range(1, 6)]
    )
    ChargeCard(order_id=42).with_metadata(customer="c-7").dispatch()

    this_file = os.path.relpath(__file__)
    kashq_command(
        "queue:work", "--import", this_file, "--queue", "emails,default",
        "--workers", "2", "--stop-when-empty",
    )  # fmt: skip
    kashq_command("queue:failed")
    print("\nNext: `kashq queue:failed 1` shows its traceback, `kashq queue:retry all` retries it.")


if __name__ == "__main__":
    main()
