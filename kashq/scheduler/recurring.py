"""Recurring schedules: the registry ``kashq.scheduler.schedule`` and its entries.

Laravel's scheduler / Celery beat, declared in the modules ``kashq
schedule:work`` imports::

    from kashq.scheduler import schedule

    schedule.every(minutes=5).dispatch(PruneCache())          # a copy each tick
    schedule.cron("0 3 * * mon-fri", tz="Europe/Paris").name("nightly").dispatch(Report())

    @schedule.cron("*/15 * * * *")
    def sync_feeds() -> None:                                 # called each tick
        FetchFeeds(source="all").dispatch()

An entry only says *when* and *what*; :mod:`kashq.scheduler.runner` fires it.
``every()`` ticks fall on multiples of the period since the Unix epoch
(``every(minutes=5)`` at :00, :05, ...); cron ticks are wall times in the
entry's zone (default: the ``timezone`` setting).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kashq.scheduler.cron import CronExpression, ScheduleError, zone

if TYPE_CHECKING:
    from kashq.dispatcher import Dispatcher
    from kashq.job import Dispatchable

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"^[^\s{}][^{}]{0,149}$")  # lock keys carry it: no braces, 150 chars at most


class Trigger(Protocol):
    """When an entry ticks, on Unix seconds."""

    def next_after(self, at: float) -> float:
        """The first tick strictly after ``at``."""
        ...

    def latest_due(self, after: float, now: float) -> tuple[float, int] | None:
        """The latest tick in ``(after, now]`` and how many earlier ones it skips; None if none."""
        ...


@dataclass(frozen=True, slots=True)
class Interval:
    """A tick every ``period_s`` seconds, on multiples of the period since the epoch."""

    period_s: int

    def next_after(self, at: float) -> float:
        """The first multiple of the period strictly after ``at``."""
        return float((math.floor(at / self.period_s) + 1) * self.period_s)

    def latest_due(self, after: float, now: float) -> tuple[float, int] | None:
        """The latest multiple in ``(after, now]`` and the count of earlier ones skipped."""
        latest = math.floor(now / self.period_s) * self.period_s
        if latest <= after:
            return None
        first = self.next_after(after)
        return float(latest), int((latest - first) // self.period_s)


@dataclass(frozen=True, slots=True)
class CronTrigger:
    """The ticks of a cron expression (wall times in its zone)."""

    cron: CronExpression

    def next_after(self, at: float) -> float:
        """The first matching time strictly after ``at``."""
        return self.cron.next_after(datetime.fromtimestamp(at, timezone.utc)).timestamp()

    def latest_due(self, after: float, now: float) -> tuple[float, int] | None:
        """The latest matching time in ``(after, now]``, walking from ``after``."""
        tick = self.next_after(after)
        if tick > now:
            return None
        skipped = 0
        while (following := self.next_after(tick)) <= now:
            tick, skipped = following, skipped + 1
        return tick, skipped


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One recurring schedule: a name, when it ticks, and the job or function it runs."""

    name: str
    expression: str  # "*/5 * * * *", or "every 30s" for an interval
    timezone: str | None  # cron only; None means the ``timezone`` setting
    period_s: int | None  # interval only
    job: Dispatchable | None = None
    function: Callable[[], Any] | None = None

    def trigger(self, default_tz: str = "UTC") -> Trigger:
        """The ticks of this entry, cron times read in its zone (or ``default_tz``)."""
        if self.period_s is not None:
            return Interval(self.period_s)
        return CronTrigger(CronExpression(self.expression, self.timezone or default_tz))

    def zone_name(self, default_tz: str = "UTC") -> str:
        """The zone this entry's times are shown in."""
        return self.timezone or default_tz

    def run(self, dispatcher: Dispatcher, connection: str | None = None) -> str | None:
        """Fire once: dispatch a fresh copy of the job through ``dispatcher``, or call the function.

        The copy goes to ``connection`` unless the job names its own. Returns
        the dispatched job's id (None for a function).
        """
        if self.job is not None:
            job = copy.deepcopy(self.job)
            if connection is not None and job.target_connection() is None:
                job.on_connection(connection)
            return dispatcher.dispatch(job)
        assert self.function is not None
        result = self.function()
        if inspect.isawaitable(result):
            asyncio.run(_wait(result))
        return None


async def _wait(awaitable: Any) -> None:
    await awaitable


class PendingEntry:
    """A schedule being declared: end with ``.dispatch(job)``, ``.call(fn)`` or as a decorator."""

    def __init__(
        self,
        registry: Schedule,
        expression: str,
        *,
        period_s: int | None = None,
        name: str | None = None,
        tz: str | None = None,
    ) -> None:
        self._registry = registry
        self._expression = expression
        self._period_s = period_s
        self._name = None if name is None else _check_name(name)
        self._tz = tz

    def name(self, name: str) -> PendingEntry:
        """Name the entry (shown by ``schedule:list``, part of its lock keys); must be unique."""
        self._name = _check_name(name)
        return self

    def timezone(self, tz: str) -> PendingEntry:
        """Read the cron times in ``tz`` (an IANA name) instead of the ``timezone`` setting."""
        if self._period_s is not None:
            raise ScheduleError("a time zone applies to cron schedules, not every()")
        zone(tz)
        self._tz = tz
        return self

    def dispatch(self, job: Dispatchable) -> ScheduleEntry:
        """Dispatch a copy of ``job`` (taken now, with its options) at every tick."""
        from kashq.job import Dispatchable

        if not isinstance(job, Dispatchable):
            raise ScheduleError(f"dispatch() takes a Job or NamedJob, got {job!r}")
        default = f"{job.type_name} {self._expression}"
        return self._register(default, job=copy.deepcopy(job))

    def call(self, function: Callable[[], Any]) -> ScheduleEntry:
        """Call ``function()`` (no arguments; may be ``async``) at every tick."""
        if not callable(function):
            raise ScheduleError(f"call() takes a function, got {function!r}")
        default = f"{function.__module__}.{getattr(function, '__qualname__', repr(function))}"
        return self._register(default, function=function)

    def __call__(self, function: F) -> F:
        """Decorator form of :meth:`call`; the function is returned unchanged."""
        self.call(function)
        return function

    def _register(self, default_name: str, **action: Any) -> ScheduleEntry:
        name = self._name or default_name
        if not _NAME.match(name):
            raise ScheduleError(f"schedule name {name[:60]!r}... is too long: give it .name(...)")
        entry = ScheduleEntry(name, self._expression, self._tz, self._period_s, **action)
        self._registry.add(entry)
        return entry


class Schedule:
    """The registry of recurring schedules (thread-safe); ``kashq.scheduler.schedule`` is one."""

    def __init__(self) -> None:
        self._entries: dict[str, ScheduleEntry] = {}
        self._lock = threading.Lock()

    def cron(self, expression: str, name: str | None = None, tz: str | None = None) -> PendingEntry:
        """A schedule firing on the cron ``expression`` (5 fields), read in ``tz``."""
        parsed = CronExpression(expression, tz)  # refuse a bad expression or zone right here
        return PendingEntry(self, parsed.text, name=name, tz=tz)

    def every(
        self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, name: str | None = None
    ) -> PendingEntry:
        """A schedule ticking every so many seconds/minutes/hours (whole seconds, at least 1)."""
        total = seconds + 60 * minutes + 3600 * hours
        if not math.isfinite(total) or total < 1 or total != int(total):
            raise ScheduleError(
                f"every() needs a period of whole seconds, at least 1 (got {total!r}s)"
            )
        period_s = int(total)
        return PendingEntry(self, f"every {_period_text(period_s)}", period_s=period_s, name=name)

    def add(self, entry: ScheduleEntry) -> None:
        """Register ``entry``; its name must not be taken."""
        with self._lock:
            if entry.name in self._entries:
                raise ScheduleError(
                    f"a schedule named {entry.name!r} already exists: give one a different "
                    "name with .name(...)"
                )
            self._entries[entry.name] = entry

    def entries(self) -> list[ScheduleEntry]:
        """Every registered entry, in registration order."""
        with self._lock:
            return list(self._entries.values())

    def get(self, name: str) -> ScheduleEntry | None:
        """The entry named ``name``, if any."""
        with self._lock:
            return self._entries.get(name)

    def remove(self, name: str) -> bool:
        """Unregister the entry named ``name``; False if there was none."""
        with self._lock:
            return self._entries.pop(name, None) is not None

    def clear(self) -> None:
        """Unregister every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[ScheduleEntry]:
        return iter(self.entries())


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ScheduleError(
            f"schedule name must be 1-150 characters, not starting with a space, without "
            f"braces: {name!r}"
        )
    return name


def _period_text(period_s: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if period_s % size == 0:
            return f"{period_s // size}{unit}"
    return f"{period_s}s"


schedule = Schedule()
"""This process's schedule registry: declare entries on it in modules ``schedule:work`` imports."""
