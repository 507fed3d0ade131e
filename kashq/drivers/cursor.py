"""The arguments of :meth:`Driver.list_jobs`, checked one way, and its cursors.

A cursor is the position of the last job a page listed, in the listing's own
order (a priority and a sequence number, a time and an id, ...), with the
listing it belongs to: JSON, base64url-encoded so it reads as one opaque token.
A driver decodes it against the shape it expects, so a cursor that was edited,
truncated or given by another listing is a one-line ValueError, never a crash
deeper down.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence

from kashq.drivers.base import JOB_STATES, LIST_LIMIT_MAX
from kashq.names import TAG_RULE, is_tag

Position = tuple[int | float | str, ...]
_KINDS = {"i": (int,), "f": (int, float), "s": (str,)}


def check_listing(state: object, limit: object, tag: object) -> None:
    """ValueError, one line, for a state, limit or tag :meth:`Driver.list_jobs` refuses."""
    if state not in JOB_STATES:
        raise ValueError(f"state must be one of {', '.join(JOB_STATES)}, got {state!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit must be an integer from 1 to {LIST_LIMIT_MAX}, got {limit!r}")
    if tag is not None and not is_tag(tag):
        raise ValueError(f"a tag is {TAG_RULE}, got {tag!r}")


def listing_kind(state: str, tag: str | None) -> str:
    """What a cursor belongs to: the state, and whether the listing is a tag's."""
    return state if tag is None else f"{state}#tag"


def encode(kind: str, position: Sequence[int | float | str]) -> str:
    """The cursor of ``position`` in listing ``kind``."""
    text = json.dumps([kind, *position], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str | None, kind: str, shape: str) -> Position | None:
    """The position ``cursor`` holds (None for no cursor: the first page).

    ``shape`` spells the position's types, one letter each: ``i`` an integer,
    ``f`` a finite number (read as a float), ``s`` a string. ValueError if the
    cursor is not one listing ``kind`` gave.
    """
    if cursor is None:
        return None
    try:
        if not isinstance(cursor, str):
            raise TypeError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, list) or data[:1] != [kind] or len(data) != len(shape) + 1:
            raise TypeError
        return tuple(_value(value, letter) for value, letter in zip(data[1:], shape, strict=True))
    except (ValueError, TypeError, OverflowError, UnicodeError, binascii.Error, RecursionError):
        shown = cursor[:40] if isinstance(cursor, str) else cursor
        raise ValueError(f"not a cursor of this {kind} listing: {shown!r}") from None


def _value(value: object, letter: str) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, _KINDS[letter]):
        raise TypeError
    if letter == "f":
        number = float(value)
        if not math.isfinite(number):
            raise TypeError
        return number
    return value
