"""How the dashboard's templates write numbers, times and durations (Jinja filters)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any


def when(ts: float | datetime | None) -> str:
    """A time as ``2026-12-07 10:00:03`` (local time), or an em dash."""
    if ts is None:
        return "—"
    if isinstance(ts, datetime):
        ts = ts.timestamp()
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str:
    """A time in ISO 8601, UTC (for ``<time datetime=...>``)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def span(seconds: float | None) -> str:
    """A length of time as people say it: ``350 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def ago(ts: float | datetime | None) -> str:
    """How long ago ``ts`` was: ``12 s ago``."""
    if ts is None:
        return "—"
    if isinstance(ts, datetime):
        ts = ts.timestamp()
    return f"{span(max(time.time() - ts, 0.0))} ago"


def ms(value: float | None) -> str:
    """Milliseconds as a duration."""
    return "—" if value is None else span(value / 1000)


def number(value: float | None, digits: int = 0) -> str:
    """``1,234`` (or ``1,234.5`` with ``digits``)."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def size(value: float | None) -> str:
    """Bytes as ``52.1 MB``."""
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


FILTERS: dict[str, Callable[..., Any]] = {
    "when": when, "iso": iso, "span": span, "ago": ago, "ms": ms, "number": number,
    "size": size,
}  # fmt: skip
