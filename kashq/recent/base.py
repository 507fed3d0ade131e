"""What ran recently: :class:`RecentJob`, the :class:`RecentStore` protocol, and its cursors.

Every job that ends ``completed``, ``cancelled`` or ``expired`` leaves a
small record in its queue's list of that outcome, so anyone can ask "what
completed on ``emails`` lately?" without keeping every job forever. Each list
is bounded twice, and every store enforces both itself whenever it writes:
records older than ``keep_s`` seconds go, and only the newest ``keep_max``
stay. Reads never show a record past its age, even before it is removed.

Lists are read newest first, by ``finished_at`` and then job id. A page's
cursor names the last record it returned, so the next page starts right
after it: records added meanwhile (newer ones, at the top) never shift it,
and no record that stays is skipped or shown twice. A job listed again under
the same queue and outcome (it ended once more) replaces its earlier record.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from kashq.clock import Clock
from kashq.exceptions import DriverError

Ended = Literal["completed", "cancelled", "expired"]
ENDED: tuple[Ended, ...] = get_args(Ended)
PAGE_MAX = 1000
"""The most records one page holds."""


class RecentStoreError(DriverError):
    """The store of recent jobs could not complete an operation (its backend failed)."""


@dataclass(frozen=True, slots=True)
class RecentJob:
    """One job that ended: where, how, when (Unix seconds on the driver's clock).

    ``attempts`` is the attempt it ended on; ``duration_s`` how long
    ``handle()`` ran (None if it never ran); ``error`` why a cancelled or
    expired job did not run, in one line.
    """

    job_id: str
    queue: str
    outcome: Ended
    job_type: str
    finished_at: float
    attempts: int = 0
    duration_s: float | None = None
    tags: tuple[str, ...] = ()
    error: str = ""


class RecentStore(Protocol):
    """Where the recently ended jobs of each queue are listed, within two bounds."""

    @property
    def keep_s(self) -> float:
        """Seconds a record is kept; 0 keeps none (and :meth:`add` writes nothing)."""
        ...

    @property
    def keep_max(self) -> int:
        """The most records kept per queue and outcome (the newest)."""
        ...

    def add(self, jobs: Sequence[RecentJob]) -> None:
        """List ``jobs``, in one round trip where the backend allows, and trim every list
        this touched to both bounds. Records already past ``keep_s`` are not written."""
        ...

    def page(
        self, queue: str, outcome: Ended, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[RecentJob], str | None]:
        """Up to ``limit`` (1 to 1000) records of ``queue`` ending ``outcome``, newest first,
        after ``cursor`` (a page's own, or None for the first); and the next page's cursor,
        None once there is no more. A malformed cursor is a ValueError."""
        ...

    def count(self, queue: str, outcome: Ended) -> int:
        """How many records ``queue`` holds of ``outcome`` (those past their age not counted)."""
        ...

    def queues(self) -> list[str]:
        """The queues holding any record, sorted."""
        ...

    def prune(self) -> int:
        """Remove every record past its age now, in every list; returns how many."""
        ...

    def close(self) -> None:
        """Release what the store opened itself (never a connection it borrowed)."""
        ...


class Bounds:
    """What every store of recent jobs shares: its two bounds, checked once, and the clock
    that ages its records (the driver's)."""

    def __init__(self, clock: Clock, keep_s: float, keep_max: int) -> None:
        if keep_max < 1:
            raise ValueError(f"keep_max must be at least 1, got {keep_max}")
        self._clock = clock
        self._keep_s = keep_s
        self._keep_max = keep_max

    @property
    def keep_s(self) -> float:
        return self._keep_s

    @property
    def keep_max(self) -> int:
        return self._keep_max

    def _keeps(self, jobs: Sequence[RecentJob]) -> bool:
        """Whether :meth:`add` has anything to write: jobs, and a store that keeps some."""
        return self._keep_s > 0 and bool(jobs)

    def _cutoff(self) -> float:
        """Records finished at this time or earlier are past their age."""
        return self._clock.time() - self._keep_s


Position = tuple[float, str]
"""Where a record sits in its list: ``(finished_at, job_id)``; lists are read descending."""


def position(job: RecentJob) -> Position:
    return (job.finished_at, job.job_id)


def encode_cursor(job: RecentJob) -> str:
    """The cursor of the page that ended with ``job``: opaque, URL-safe text."""
    text = f"{float(job.finished_at)!r}|{job.job_id}".encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; ValueError in one line if it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        at, sep, job_id = text.partition("|")
        finished_at = float(at)
    except (UnicodeError, binascii.Error, ValueError, AttributeError, TypeError):
        finished_at, sep, job_id = math.nan, "", ""
    if not sep or not job_id or not math.isfinite(finished_at):
        raise ValueError(f"malformed cursor {str(cursor)[:60]!r}: pass one a page returned")
    return finished_at, job_id


def check_page(outcome: str, limit: int) -> None:
    """ValueError in one line unless ``outcome`` is one of :data:`ENDED` and ``limit`` 1..1000."""
    if outcome not in ENDED:
        raise ValueError(f"outcome must be one of {', '.join(ENDED)}, got {outcome!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
        raise ValueError(f"limit must be a whole number from 1 to {PAGE_MAX}, got {limit!r}")
