"""Cron expressions: a small parser and ``next_after`` in a time zone.

Five fields, ``minute hour day-of-month month day-of-week``, each a ``*``, a
number, a range ``a-b``, a list ``a,b``, or a step ``*/n``, ``a-b/n``, ``a/n``;
months and weekdays also by name (``jan``..``dec``, ``sun``..``sat``), and 0 or
7 is Sunday. The macros ``@hourly @daily @midnight @weekly @monthly @yearly
@annually`` are accepted too. As in Vixie cron, when both day fields are
restricted (neither starts with ``*``) a day matches if EITHER matches.

Times are wall-clock times in the expression's zone: a wall time that does
not exist (the hour skipped when DST starts) is skipped, and an ambiguous one
(the hour repeated when DST ends) fires once, at its first occurrence.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kashq.exceptions import KashqError

__all__ = ["CronExpression", "ScheduleError", "parse_cron", "zone"]


class ScheduleError(KashqError):
    """A schedule is declared wrongly: a bad cron expression, interval, zone or name."""


MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {n.lower(): i for i, n in enumerate(calendar.month_abbr) if n}
_DAYS = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# Feb 29 of a leap year can be 8 years away (2096 -> 2104): look that far, and a bit.
_MAX_DAYS = 366 * 9


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _DAYS),
)


def zone(name: str | tzinfo | None) -> tzinfo:
    """The zone named ``name`` (an IANA name such as ``Europe/Paris``); None is UTC."""
    if name is None:
        return timezone.utc
    if isinstance(name, tzinfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r}: expected an IANA name such as UTC or Europe/Paris"
        ) from None


class CronExpression:
    """A parsed cron expression bound to a time zone (UTC by default)."""

    def __init__(self, text: str, tz: str | tzinfo | None = None) -> None:
        if not isinstance(text, str):
            raise ScheduleError(f"a cron expression is a string, got {text!r}")
        self.text = " ".join(text.split())
        self.tz = zone(tz)
        fields = MACROS.get(self.text.lower(), self.text).split()
        if len(fields) != 5:
            self._fail(f"expected 5 fields (minute hour day-of-month month day-of-week), "
                       f"got {len(fields)}")  # fmt: skip
        parsed = [self._parse_field(part, spec) for part, spec in zip(fields, _FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, self.weekdays = (
            tuple(sorted(values)) for values in parsed
        )
        self._day_star, self._weekday_star = fields[2].startswith("*"), fields[4].startswith("*")
        self._check_day_exists()

    def __repr__(self) -> str:
        return f"CronExpression({self.text!r}, tz={str(self.tz)!r})"

    # -- parsing --------------------------------------------------------
    def _fail(self, why: str) -> NoReturn:
        raise ScheduleError(f"invalid cron expression {self.text!r}: {why}")

    def _parse_field(self, text: str, spec: _Field) -> set[int]:
        values: set[int] = set()
        for part in text.split(","):
            base, slash, step_text = part.partition("/")
            step = self._value(step_text, spec, step=True) if slash else 1
            if base == "*":
                low, high = spec.low, 6 if spec.name == "day-of-week" else spec.high
            elif "-" in base:
                first, _, last = base.partition("-")
                low, high = self._value(first, spec), self._value(last, spec)
                if low > high:
                    self._fail(f"range {base!r} in the {spec.name} field goes backwards")
            else:
                low = self._value(base, spec)
                high = spec.high if slash else low  # "a/n" means a, a+n, ... up to the maximum
            values.update(range(low, high + 1, step))
        if spec.name == "day-of-week" and 7 in values:
            values = (values - {7}) | {0}  # 7 is Sunday too
        return values

    def _value(self, text: str, spec: _Field, *, step: bool = False) -> int:
        what = f"step in the {spec.name} field" if step else f"{spec.name} value"
        if text.isdigit() and text.isascii():
            number = int(text)
        elif not step and spec.names is not None and text.lower() in spec.names:
            return spec.names[text.lower()]
        else:
            self._fail(f"{what} {text!r} is not a number" + _name_hint(spec, step))
        if step and number < 1:
            self._fail(f"{what} must be at least 1")
        if not step and not spec.low <= number <= spec.high:
            self._fail(f"{what} {number} is out of range {spec.low}-{spec.high}")
        return number

    def _check_day_exists(self) -> None:
        """Refuse a date that never comes (``0 0 30 2 *``) instead of searching forever."""
        if self._day_star or not self._weekday_star:
            return
        longest = max(calendar.monthrange(2024, month)[1] for month in self.months)
        if self.days[0] > longest:
            months = ", ".join(calendar.month_abbr[m].lower() for m in self.months)
            self._fail(f"day {self.days[0]} never occurs in {months}")

    # -- matching -------------------------------------------------------
    def matches_day(self, day: date) -> bool:
        """Whether the day fields allow ``day`` (Vixie: OR when both are restricted)."""
        if day.month not in self.months:
            return False
        day_ok = day.day in self.days
        weekday_ok = day.isoweekday() % 7 in self.weekdays
        if self._day_star or self._weekday_star:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after ``moment`` (aware) that matches, in this zone."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ScheduleError("next_after needs an aware datetime (with tzinfo)")
        after = moment.astimezone(timezone.utc)
        start = moment.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0)
        start += timedelta(minutes=1)
        day = start.date()
        for _ in range(_MAX_DAYS):
            if self.matches_day(day):
                found = self._first_in_day(day, start, after)
                if found is not None:
                    return found
            day += timedelta(days=1)
        raise ScheduleError(f"cron expression {self.text!r} does not fire within 9 years")

    def _first_in_day(self, day: date, start: datetime, after: datetime) -> datetime | None:
        first = (start.hour, start.minute) if day == start.date() else (0, 0)
        for hour in self.hours:
            if hour < first[0]:
                continue
            for minute in self.minutes:
                if (hour, minute) < first:
                    continue
                found = self._resolve(datetime.combine(day, time(hour, minute)), after)
                if found is not None:
                    return found
        return None

    def _resolve(self, wall: datetime, after: datetime) -> datetime | None:
        """``wall`` as an aware time after ``after``; None if it does not exist or has passed."""
        utc = wall.replace(tzinfo=self.tz).astimezone(timezone.utc)  # fold=0: first occurrence
        local = utc.astimezone(self.tz)
        if local.replace(tzinfo=None) != wall:
            return None  # in the gap when clocks go forward: this wall time never happens
        if utc <= after:
            return None  # an ambiguous time whose first occurrence is already past
        return local


def parse_cron(text: str, tz: str | tzinfo | None = None) -> CronExpression:
    """Parse ``text`` for zone ``tz``; raises :class:`ScheduleError` with the reason."""
    return CronExpression(text, tz)


def _name_hint(spec: _Field, step: bool) -> str:
    if step or spec.names is None:
        return ""
    return f" or a name ({', '.join(list(spec.names)[:3])}...)"
