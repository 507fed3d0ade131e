"""``manage.py kashq <command> [options]``: the ``kashq`` command with the project's settings.

Every kashq command and option is the same (``manage.py kashq queue:work
--workers=5``, ``manage.py kashq queue:failed``, ``manage.py kashq --help``);
Django has set itself up first, so kashq reads ``settings.KASHQ`` and knows
every app's jobs.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run a kashq command (queue:work, queue:failed, ...): manage.py kashq --help lists them."

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand everything after ``kashq`` to kashq's own command line."""
        from kashq.cli import app

        app(args=argv[2:], prog_name=f"{sys.argv[0]} kashq")

    def handle(self, *args: Any, **options: Any) -> None:  # call_command("kashq", ...)
        from kashq.cli import app

        app(args=list(args), prog_name="kashq", standalone_mode=False)
