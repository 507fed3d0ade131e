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


TAG_MAX = 100
TAGS_MAX = 20
_EDGE, _INSIDE = r"[^\x00-\x1f\x7f\s]", r"[^\x00-\x1f\x7f]"
_TAG = re.compile(rf"^{_EDGE}(?:{_INSIDE}{{0,{TAG_MAX - 2}}}{_EDGE})?$")
TAG_RULE = f"1-{TAG_MAX} characters, no control characters, no spaces at either end"


def is_tag(tag: object) -> TypeGuard[str]:
    """Whether ``tag`` is a usable job tag (``user:42``, ``App\\Models\\Video:7``)."""
    return isinstance(tag, str) and _TAG.match(tag) is not None


def check_tags(tags: object) -> tuple[str, ...]:
    """``tags`` (an iterable of tags) as a tuple without repeats; else ValueError saying why."""
    if isinstance(tags, str) or not hasattr(tags, "__iter__"):
        raise ValueError(f"tags must be a list of strings, got {tags!r}")
    checked = tuple(dict.fromkeys(tags))
    for tag in checked:
        if not is_tag(tag):
            raise ValueError(f"a tag is {TAG_RULE}, got {tag!r}")
    if len(checked) > TAGS_MAX:
        raise ValueError(f"a job has at most {TAGS_MAX} tags, got {len(checked)}")
    return checked
