"""Names that enter kashq from outside: queue names, checked one way everywhere.

A queue name appears in storage keys (as a Redis hash tag) and in the
comma-separated lists of the command line and ``KASHQ_QUEUE``, so whitespace,
commas and braces are refused wherever a name enters: a job's ``queue``,
``on_queue()``, settings, ``--queue`` flags and worker options.
"""

from __future__ import annotations

import re
from typing import TypeGuard

QUEUE_NAME_MAX = 200
_QUEUE_NAME = re.compile(rf"^[^\s,{{}}]{{1,{QUEUE_NAME_MAX}}}$")
QUEUE_NAME_RULE = f"1-{QUEUE_NAME_MAX} characters without whitespace, commas or braces"


def is_queue_name(queue: object) -> TypeGuard[str]:
    """Whether ``queue`` is a usable queue name."""
    return isinstance(queue, str) and _QUEUE_NAME.match(queue) is not None


def check_queue_name(queue: object) -> str:
    """``queue`` if it is a usable queue name, else ValueError saying the rule."""
    if not is_queue_name(queue):
        raise ValueError(f"a queue name is {QUEUE_NAME_RULE}, got {queue!r}")
    return queue
