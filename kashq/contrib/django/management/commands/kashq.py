"""``manage.py kashq <command> [options]``: the ``kashq`` command with the project's settings.

Every kashq command and option is the same (``manage.py kashq queue:work
--workers=5``, ``manage.py kashq queue:failed``, ``manage.py kashq --help``);
Django has set itself up first, so kashq reads ``settings.KASHQ`` and knows
every app's jobs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run a kashq command (queue:work, queue:failed, ...): manage.py kashq --help lists them."

    def add_arguments(self, parser: Any) -> None:  # call_command("kashq", "queue:size")
        parser.add_argument("args", nargs=argparse.REMAINDER)

    def run_from_argv(self, argv: list[str]) -> None:
        """Hand everything after ``kashq`` to kashq's own command line, but Django's own
        ``--settings`` and ``--pythonpath`` (which Django has applied)."""
        from kashq.cli import app

        app(args=_without_django_options(argv[2:]), prog_name=f"{sys.argv[0]} kashq")

    def handle(self, *args: Any, **options: Any) -> None:
        from kashq.cli import app

        app(args=list(args), prog_name="kashq", standalone_mode=False)


def _without_django_options(args: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True  # its value follows
        elif not arg.startswith(tuple(option + "=" for option in _DJANGO_OPTIONS)):
            kept.append(arg)
    return kept


_DJANGO_OPTIONS = ("--settings", "--pythonpath")
