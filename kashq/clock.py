"""Time, behind a small protocol so tests can move it by hand.

Drivers and the worker take a :class:`Clock`; production code uses
:data:`SYSTEM_CLOCK`, tests use :class:`kashq.testing.FakeClock`. All times are
Unix seconds as floats (``*_at`` names); durations are seconds (``*_s`` names).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time and sleeping."""

    def time(self) -> float:
        """Current Unix time in seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (a fake clock just advances)."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
