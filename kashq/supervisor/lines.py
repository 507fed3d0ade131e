"""``queue:work`` output: one line per job step, Laravel-style, or one JSON object per event.

    2026-11-22 10:00:00 app.jobs.SendWelcomeEmail ............... RUNNING
    2026-11-22 10:00:00 app.jobs.SendWelcomeEmail ........ 12.34ms DONE
    2026-11-22 10:00:01 app.jobs.ChargeCard ............... 3.10ms RETRY in 1s
        RuntimeError: card declined

Worker processes print their own jobs (each line is one write, so lines from
several processes never interleave mid-line); the supervisor prints its own
events through :meth:`JobLines.note`. On a terminal the lines are coloured by
rich; otherwise they are plain text, or JSON with ``--json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from kashq.jobevents import EventKind, JobEvent
from kashq.supervisor.spec import Output

_PLAIN_WIDTH = 100
_STATUS = {
    EventKind.STARTED: ("RUNNING", "yellow"),
    EventKind.COMPLETED: ("DONE", "green"),
    EventKind.RETRIED: ("RETRY", "yellow"),
    EventKind.FAILED: ("FAIL", "red"),
    EventKind.PARKED: ("FAIL", "red"),
    EventKind.CANCELLED: ("CANCELLED", "yellow"),
    EventKind.EXPIRED: ("EXPIRED", "yellow"),
}


def duration(seconds: float) -> str:
    """Laravel's run-time format: ``12.34ms`` below a second, ``1.23s`` above."""
    return f"{seconds * 1e3:.2f}ms" if seconds < 1 else f"{seconds:.2f}s"


def delay(seconds: float) -> str:
    """How long until a retry, as rounded as a person reads it: ``250ms``, ``2.2s``, ``15s``."""
    millis = round(seconds * 1e3)
    if millis <= 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    if seconds < 10:
        return f"{round(seconds, 1):g}s"
    return f"{round(seconds)}s"


class JobLines:
    """Renders worker events (as a worker listener) and supervisor notes."""

    def __init__(
        self, mode: Output, *, verbose: bool = False, worker: int | None = None,
        stream: TextIO | None = None,
    ) -> None:  # fmt: skip
        self.mode = mode
        self.verbose = verbose
        self._worker = worker
        self._pid = os.getpid()
        self._stream = stream or sys.stdout
        self._console: Console | None = None
        if mode is Output.TTY:
            self._console = Console(file=self._stream, force_terminal=True, highlight=False)
        self._second = -1
        self._stamp = ""

    # -- worker events --------------------------------------------------
    def __call__(self, event: JobEvent) -> None:
        status = _STATUS.get(event.kind)
        if self.mode is Output.QUIET or status is None:  # IDLE and RAN print nothing
            return
        if self.mode is Output.JSON:
            self._write_json(_event_fields(event, self._worker, self._pid))
            return
        if event.recording_again:  # its FAIL line was printed when it was parked
            return
        label, colour = status
        if event.kind is EventKind.RETRIED and event.delay_s is not None:
            label = f"RETRY in {delay(event.delay_s)}"
        took = "" if event.duration_s is None else duration(event.duration_s)
        name = event.job_type or "(undecodable job)"
        if self.verbose:
            name = f"{name} {event.job_id} #{event.attempt} w{self._worker}"
        self._line(event.at, name, took, (label, colour), event.error)

    def timeout(
        self, job_id: str, job_type: str, took_s: float, limit_s: float, worker: int
    ) -> None:
        """The supervisor killed ``worker`` because its job ran past ``limit_s``."""
        if self.mode is Output.JSON:
            self._write_json(
                {"event": "job.timeout", "at": _iso(time.time()), "job_id": job_id,
                 "job": job_type, "worker": worker, "duration_ms": round(took_s * 1e3, 3),
                 "timeout_s": limit_s}
            )  # fmt: skip
        elif self.mode is not Output.QUIET:
            error = f"ran past its timeout of {limit_s:g}s: worker {worker} killed"
            self._line(time.time(), job_type, duration(took_s), ("TIMEOUT", "red"), error)

    # -- supervisor notes -------------------------------------------------
    def note(self, event: str, message: str, *, style: str = "", **fields: Any) -> None:
        """A supervisor event: a plain message, or a JSON object with ``fields``."""
        if self.mode is Output.JSON:
            self._write_json({"event": event, "at": _iso(time.time()), **fields})
        else:
            self._emit(message, f"[{style}]{escape(message)}[/]" if style else escape(message))

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    # -- rendering --------------------------------------------------------
    def _line(
        self, at: float, name: str, took: str, status: tuple[str, str], error: str | None
    ) -> None:
        label, colour = status
        stamp = self._timestamp(at)
        width = self._width()
        tail = f" {took} {label}" if took else f" {label}"
        dots = max(width - len(stamp) - len(name) - len(tail) - 4, 1)
        detail = f"\n      {error}" if error else ""
        took_markup = f" [bright_black]{took}[/]" if took else ""
        styled = (
            f"  [bright_black]{stamp}[/] {escape(name)} [bright_black]{'.' * dots}[/]"
            f"{took_markup} [bold {colour}]{label}[/]"
            + (f"\n      [bright_black]{escape(error or '')}[/]" if error else "")
        )
        self._emit(f"  {stamp} {name} {'.' * dots}{tail}{detail}", styled)

    def _write_json(self, fields: dict[str, Any]) -> None:
        self._emit(json.dumps(fields, separators=(",", ":")), None)

    def _emit(self, plain: str, styled: str | None) -> None:
        """One line (or two), in one write; a closed or full stdout never stops a worker."""
        try:
            if self._console is not None and styled is not None:
                self._console.print(styled, soft_wrap=True)
            else:
                self._stream.write(plain + "\n")
                self._stream.flush()
        except OSError:
            pass

    def _timestamp(self, at: float) -> str:
        second = int(at)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return self._stamp

    def _width(self) -> int:
        if self._console is None:
            return _PLAIN_WIDTH
        return min(shutil.get_terminal_size((_PLAIN_WIDTH, 24)).columns, 160)


def _event_fields(event: JobEvent, worker: int | None, pid: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": f"job.{event.kind.value}",
        "at": _iso(event.at),
        "job_id": event.job_id,
        "job": event.job_type,
        "queue": event.queue,
        "attempt": event.attempt,
        "worker": worker,
        "pid": pid,
    }
    if event.duration_s is not None:
        fields["duration_ms"] = round(event.duration_s * 1e3, 3)
    if event.timeout_s is not None:
        fields["timeout_s"] = event.timeout_s
    if event.delay_s is not None:
        fields["delay_s"] = event.delay_s
    if event.error is not None:
        fields["error"] = event.error
    return fields


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
