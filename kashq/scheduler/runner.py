"""The runner: fires each recurring schedule once per tick, across every machine running it.

Several runners (``kashq schedule:work`` on several hosts, for availability)
may run the same schedules against one queue connection. Before firing a tick
a runner takes the lock ``schedule:<name>:<tick epoch>`` from the connection's
lock backend (:func:`kashq.locks.backend_for`) and never releases it: the lock
stays as the mark "this tick was fired" until its TTL (the gap to the next
tick plus :data:`LOCK_MARGIN_S`) ends, so whichever runner comes second skips.
Hosts' clocks must agree to well within that margin (NTP).

A runner starts from "now": ticks before it started are not fired. After a
pause (a suspended process, a slow dispatch, a lock backend that was down)
it fires only the LATEST missed tick of each entry and logs how many it
skipped; a schedule never fires a burst of catch-up ticks.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.dispatcher import Dispatcher
from kashq.exceptions import KashqError
from kashq.locks import LockBackend, backend_for
from kashq.manager import QueueManager, swap_manager
from kashq.scheduler.recurring import Schedule, ScheduleEntry, Trigger, schedule

log = logging.getLogger(__name__)

LOCK_MARGIN_S = 60.0
"""Seconds a tick's lock outlives the gap to the next tick (tolerated clock skew between hosts)."""
MAX_SLEEP_S = 1.0  # wake at least this often, to see new entries and clock jumps
RETRY_S = 1.0  # after a lock backend error, try the same tick again this much later
LAST_FIRE_PREFIX = "schedule:"
"""Control records ``schedule:<name>``: each entry's last fire (JSON), for the dashboard."""
LAST_FIRE_KEEP_S = 30 * 86_400.0
HOST = socket.gethostname()


@dataclass(frozen=True, slots=True)
class Fired:
    """What happened to one entry at one tick."""

    name: str
    tick_at: float  # Unix seconds of the tick
    fired: bool  # False: another runner had already taken this tick
    job_id: str | None = None  # the dispatched job (dispatch entries)
    skipped: int = 0  # earlier ticks missed during a pause, not fired
    error: str | None = None  # the entry raised; logged, the runner goes on


class ScheduleRunner:
    """Fires the due entries of a :class:`Schedule` through a queue manager.

    ``connection`` (default: the manager's) holds the tick locks and receives
    the jobs of dispatch entries that name no connection of their own.
    ``locks`` replaces the connection's lock backend; ``dispatcher`` the manager
    as the receiver of those jobs (a test fake, say).
    """

    def __init__(
        self,
        manager: QueueManager,
        registry: Schedule | None = None,
        *,
        locks: LockBackend | None = None,
        connection: str | None = None,
        dispatcher: Dispatcher | None = None,
        timezone: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_fire: Callable[[Fired], None] | None = None,
    ) -> None:
        self.manager = manager
        self.registry = registry if registry is not None else schedule
        self.connection = connection
        self.locks = locks if locks is not None else backend_for(manager.connection(connection))
        self.dispatcher: Dispatcher = dispatcher if dispatcher is not None else manager
        self.timezone = timezone or manager.settings.timezone
        self.clock = clock
        self.on_fire = on_fire
        self._last: dict[str, float] = {}  # entry name -> last tick handled (Unix seconds)
        self._triggers: dict[str, Trigger] = {}
        self._stop = threading.Event()

    # -- one pass -------------------------------------------------------
    def run_pending(self) -> list[Fired]:
        """Fire every entry whose tick has come since the last pass; returns what happened."""
        now = self.clock.time()
        results = []
        for entry in self.registry.entries():
            result = self._run_entry(entry, now)
            if result is not None:
                results.append(result)
                if self.on_fire is not None:
                    self.on_fire(result)
        return results

    def _run_entry(self, entry: ScheduleEntry, now: float) -> Fired | None:
        last = self._last.get(entry.name)
        if last is None:
            self._last[entry.name] = now  # a new entry counts from now, like a new runner
            return None
        trigger = self._trigger(entry)
        due = trigger.latest_due(last, now)
        if due is None:
            return None
        tick, skipped = due
        if skipped:
            log.warning("schedule %s: %d missed tick(s) skipped, firing the latest", entry.name,
                        skipped)  # fmt: skip
        ttl_s = trigger.next_after(tick) - tick + LOCK_MARGIN_S
        try:
            lock = self.locks.try_acquire(f"schedule:{entry.name}:{int(tick)}", ttl_s)
        except (KashqError, OSError) as exc:
            # Not marked as handled: the next pass tries this tick again, while it is the latest.
            log.error("schedule %s: cannot take the lock of its tick: %s", entry.name, exc)
            return None
        self._last[entry.name] = tick
        if lock is None:
            return Fired(entry.name, tick, fired=False, skipped=skipped)
        try:
            job_id = entry.run(self.dispatcher, self.connection)
        except Exception as exc:  # the user's code: report it, keep the other schedules going
            log.exception("schedule %s failed at its tick", entry.name)
            fired = Fired(
                entry.name, tick, True, skipped=skipped, error=f"{type(exc).__name__}: {exc}"
            )
        else:
            fired = Fired(entry.name, tick, fired=True, job_id=job_id, skipped=skipped)
        self._remember(fired)
        return fired

    def _remember(self, fired: Fired) -> None:
        """Keep the last fire of an entry as the control record ``schedule:<name>`` (read by
        the dashboard); a backend that fails costs a log line, never the schedule."""
        record = {"tick_at": fired.tick_at, "fired_at": self.clock.time(), "host": HOST,
                  "job_id": fired.job_id, "error": fired.error}  # fmt: skip
        try:
            self.manager.connection(self.connection).put_control(
                LAST_FIRE_PREFIX + fired.name, json.dumps(record), LAST_FIRE_KEEP_S
            )
        except (KashqError, OSError) as exc:
            log.warning("schedule %s: cannot record its last fire: %s", fired.name, exc)

    def _trigger(self, entry: ScheduleEntry) -> Trigger:
        trigger = self._triggers.get(entry.name)
        if trigger is None:
            trigger = self._triggers[entry.name] = entry.trigger(self.timezone)
        return trigger

    def next_wake_in(self) -> float:
        """Seconds until the earliest next tick (at most :data:`MAX_SLEEP_S`)."""
        now = self.clock.time()
        soonest = MAX_SLEEP_S
        for entry in self.registry.entries():
            last = self._last.get(entry.name)
            if last is not None:
                soonest = min(soonest, self._trigger(entry).next_after(last) - now)
        return max(soonest, 0.001)

    # -- the loop -------------------------------------------------------
    def run(self) -> None:
        """Fire due entries until :meth:`stop` is called (from a signal handler or thread).

        A stopped runner stays stopped (a stop that comes before ``run`` counts).
        """
        while not self._stop.is_set():
            try:
                self.run_pending()
            except (KashqError, OSError) as exc:
                log.error("scheduler pass failed: %s", exc)
                self._stop.wait(RETRY_S)
                continue
            self._stop.wait(self.next_wake_in())

    def stop(self) -> None:
        """Make :meth:`run` return after the entry it is firing, if any."""
        self._stop.set()


def run_scheduler(
    connection: str | None = None,
    imports: Sequence[str] = (),
    *,
    registry: Schedule | None = None,
    on_fire: Callable[[Fired], None] | None = None,
) -> None:
    """Import ``imports`` (and KASHQ_IMPORTS), then fire schedules until SIGTERM or SIGINT.

    What ``kashq schedule:work`` does, for a program of one's own; call it
    from the main thread (it installs the signal handlers, and restores them).
    """
    from kashq.config import load_settings
    from kashq.imports import import_job_modules

    manager = QueueManager(load_settings(connection=connection))
    previous = swap_manager(manager)  # a function entry's job.dispatch() goes here too
    try:
        import_job_modules([*manager.settings.imports, *imports])
        runner = ScheduleRunner(manager, registry, on_fire=on_fire)
        with stop_on_signals(runner):
            runner.run()
    finally:
        swap_manager(previous)
        manager.close()


@contextmanager
def stop_on_signals(runner: ScheduleRunner) -> Iterator[ScheduleRunner]:
    """While inside, SIGTERM and SIGINT stop ``runner``; the old handlers come back after."""

    def handle(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    saved = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield runner
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


_COUNT = "import sys; from kashq.scheduler.runner import _count_main; _count_main(sys.argv[1:])"


class SchedulerProcess:
    """``kashq schedule:work`` as a child process, for ``queue:work --with-scheduler``."""

    name = "scheduler"

    def __init__(
        self,
        connection: str | None = None,
        imports: Sequence[str] = (),
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = [sys.executable, "-m", "kashq", "schedule:work"]
        if connection:
            self.args.append(connection)
        for module in imports:
            self.args += ["--import", module]
        self.imports = list(imports)
        self.cwd = cwd
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def schedules(self, timeout_s: float = 120) -> int | None:
        """How many schedules ``imports`` declare, counted in a throwaway interpreter.

        The caller (a supervisor) runs none of the user's code itself. None if
        they could not be counted: the child, once started, says why.
        """
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _COUNT, *self.imports], cwd=self.cwd,
                env=self.env or dict(os.environ), capture_output=True, text=True,
                timeout=timeout_s, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        last = (proc.stdout.strip().splitlines() or [""])[-1]  # modules may print too
        return int(last) if proc.returncode == 0 and last.isdigit() else None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> SchedulerProcess:
        """Start the child (its output goes to this process's stdout/stderr)."""
        self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env or dict(os.environ))
        return self

    def poll(self) -> int | None:
        """The child's exit code (reaping it), or None while it runs (or before start)."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the child and wait up to ``timeout_s``, then SIGKILL; returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def _count_main(imports: list[str]) -> None:
    """Print how many schedules ``imports`` declare (:meth:`SchedulerProcess.schedules`)."""
    from kashq.imports import import_job_modules

    import_job_modules(imports)
    sys.stdout.write(f"{len(schedule.entries())}\n")
