"""The ``queue:work`` supervisor: keeps N worker processes alive and enforces hard timeouts.

It runs no user code. Each worker process records the job it runs in a
shared-memory slot (:mod:`kashq.supervisor.slots`); every 50 ms the supervisor
reaps exited workers and replaces them, and kills a worker whose job ran past
its deadline (the replacement then counts that attempt as failed). It also
polls the driver for ``queue:restart`` and publishes its figures there for
``queue:monitor``.

Signals: the first SIGTERM/SIGINT asks every worker to finish its job and
exit (up to the grace period, after which they are killed); a second one kills
them at once. Jobs a killed worker held are handed out again — at once when
the supervisor can reach the driver, else when their lease lapses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from kashq.cli.joblines import JobLines
from kashq.drivers.base import Driver, Reservation
from kashq.envelope import decode, peek
from kashq.exceptions import EnvelopeError, KashqError
from kashq.supervisor.child import COMMAND
from kashq.supervisor.slots import Slots, SlotState
from kashq.supervisor.spec import Exit, Output, WorkSpec

log = logging.getLogger(__name__)

_TICK_S = 0.05
_RESTART_POLL_S = 1.0
_STATS_EVERY_S = 2.0
_STATS_TTL_S = 10.0
_QUICK_CRASH_S = 2.0  # a worker dying sooner than this after its start is crash-looping
_MAX_BACKOFF_S = 30.0


@dataclass
class _Process:
    """One worker process and what the supervisor decided about it."""

    index: int
    popen: subprocess.Popen[bytes]
    started: float
    replace: bool = False  # replace it when it exits (restart signal, timeout kill)
    timed_out: bool = False
    told: bool = False  # sent SIGTERM already: a second one would stop it mid-job


@dataclass
class _Schedule:
    """A slot waiting for a new worker process."""

    at: float
    recover: str | None = None


@dataclass
class SupervisorOptions:
    """How the supervisor runs its workers."""

    workers: int = 1
    grace_s: float = 30.0


@dataclass
class _State:
    signals: int = 0
    stopping: bool = False
    grace_deadline: float = 0.0
    fatal: bool = False
    crashes: dict[int, int] = field(default_factory=dict)


class Supervisor:
    """Starts, watches and replaces the worker processes of one ``queue:work``."""

    def __init__(
        self, spec: WorkSpec, options: SupervisorOptions, driver: Driver, lines: JobLines
    ) -> None:
        self.spec = spec
        self.options = options
        self.driver = driver
        self.lines = lines
        self.slots = Slots.create(options.workers)
        self._procs: dict[int, _Process] = {}
        self._scheduled: dict[int, _Schedule] = {}
        self._state = _State()
        self._restart_seen = 0.0
        self._next_restart_poll = self._next_stats = 0.0
        self._driver_warned = False
        self._started_at = time.time()
        # Host and pid name it for people; the random part keeps two containers
        # with the same hostname and pid 1 apart.
        self._stats_name = f"supervisor:{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"

    # -- the loop ---------------------------------------------------------
    def run(self) -> int:
        """Run until every worker has exited; returns the exit code for the command."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._restart_seen = self._restart_time() or 0.0
        for index in range(self.options.workers):
            self._start(index, None)
        forced = False
        try:
            while self._procs or self._scheduled:
                now = time.monotonic()
                if self._state.signals >= 2 and not forced:
                    forced = True
                    self._kill_all("stopping at once")
                elif self._state.signals == 1 and not self._state.stopping:
                    self._begin_stop("finishing running jobs")
                self._reap(now)
                self._start_due(now)
                self._enforce_timeouts(now)
                self._poll_driver(now)
                if self._state.stopping and now > self._state.grace_deadline and not forced:
                    forced = True
                    self._kill_all(f"grace period of {self.options.grace_s:g}s is over")
                time.sleep(_TICK_S)
        finally:
            self._publish_stats(final=True)
            self.slots.close()
        if self._state.fatal:
            return 1
        self.lines.note("supervisor.stopped", "Stopped.", style="bright_black")
        return 1 if forced and self._state.signals >= 2 else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._state.signals += 1

    # -- processes ----------------------------------------------------------
    def _start(self, index: int, recover: str | None) -> None:
        spec = dataclasses.replace(self.spec, index=index, slots_fd=self.slots.fd, recover=recover)
        popen = subprocess.Popen(
            [sys.executable, "-c", COMMAND, spec.to_json()],
            stdin=subprocess.PIPE,
            pass_fds=(self.slots.fd,),
        )
        self._procs[index] = _Process(index, popen, time.monotonic())
        if self.spec.verbose or self.lines.mode is Output.JSON:
            self.lines.note(
                "worker.started",
                f"  worker {index} started (pid {popen.pid})",
                style="bright_black",
                worker=index,
                pid=popen.pid,
            )

    def _reap(self, now: float) -> None:
        for index, proc in list(self._procs.items()):
            code = proc.popen.poll()
            if code is None:
                continue
            del self._procs[index]
            if proc.popen.stdin is not None:
                proc.popen.stdin.close()
            self._after_exit(proc, code, now)

    def _after_exit(self, proc: _Process, code: int, now: float) -> None:
        state, index = self._state, proc.index
        how = _describe_exit(code)
        if code == Exit.FATAL:
            state.fatal = True
            self._begin_stop("a worker could not start")
            return
        if state.stopping:
            if code not in (Exit.DONE, Exit.RECYCLE) and not proc.timed_out:
                self._settle_abandoned(index)
            return  # a job killed for its timeout now is left to its lease
        if code == Exit.DONE and not proc.replace:
            return  # --once, --stop-when-empty: this worker is done
        recover = None
        if proc.timed_out:
            recover = "was killed: its job ran past its timeout"
        elif code not in (Exit.DONE, Exit.RECYCLE):
            recover = how
            self.lines.note(
                "worker.died",
                f"  worker {index} (pid {proc.popen.pid}) {how}; starting a new one",
                style="red",
                worker=index,
                pid=proc.popen.pid,
                exit_code=code,
            )
        delay = 0.0
        if recover is not None and not proc.timed_out and now - proc.started < _QUICK_CRASH_S:
            crashes = state.crashes[index] = state.crashes.get(index, 0) + 1
            delay = min(2.0 ** (crashes - 1), _MAX_BACKOFF_S)
        else:
            state.crashes.pop(index, None)
        self._scheduled[index] = _Schedule(now + delay, recover)

    def _start_due(self, now: float) -> None:
        if self._state.stopping:
            self._scheduled.clear()
            return
        for index, schedule in list(self._scheduled.items()):
            if schedule.at <= now:
                del self._scheduled[index]
                self._start(index, schedule.recover)

    def _signal_all(self, signum: int) -> None:
        """Send ``signum`` to every worker; SIGTERM only to those not told yet."""
        for proc in self._procs.values():
            if signum == signal.SIGTERM:
                if proc.told:
                    continue
                proc.told = True
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signum)

    def _begin_stop(self, why: str) -> None:
        state = self._state
        state.stopping = True
        state.grace_deadline = time.monotonic() + self.options.grace_s
        self._scheduled.clear()
        running = self._running_count()
        self.lines.note(
            "supervisor.stopping",
            f"Stopping ({why}): {running} running job(s) finish first, "
            f"for up to {self.options.grace_s:g}s.",
            style="yellow",
            running=running,
        )
        self._signal_all(signal.SIGTERM)

    def _kill_all(self, why: str) -> None:
        self._state.stopping = True
        self._scheduled.clear()
        self.lines.note(
            "supervisor.killing",
            f"Stopping at once ({why}): running jobs will be handed out again.",
            style="red",
        )
        self._signal_all(signal.SIGKILL)

    def _running_count(self) -> int:
        count = 0
        for index in self._procs:
            view = self.slots.read(index)
            count += view is not None and view.state is SlotState.RUNNING
        return count

    def _settle_abandoned(self, index: int) -> None:
        """A worker killed while stopping: hand its job out again now, not after its lease."""
        view = self.slots.read(index)
        if view is None or view.reservation is None:
            return
        res = view.reservation
        try:
            if view.state is SlotState.COMPLETED:
                self.driver.ack(res)
            elif view.state is SlotState.RUNNING:
                self.driver.release(res, decode(res.raw))
        except (KashqError, EnvelopeError) as exc:
            log.warning("job %s is left to its lease: %s", res.id, exc)

    # -- timeouts -----------------------------------------------------------
    def _enforce_timeouts(self, now: float) -> None:
        for index, proc in self._procs.items():
            if proc.timed_out:
                continue
            view = self.slots.read(index)
            if view is None or view.state is not SlotState.RUNNING or not view.deadline:
                continue
            if now < view.deadline or view.pid != proc.popen.pid:
                continue  # in time, or a predecessor's job the new process is settling
            again = self.slots.read(index)
            if again is None or again.seq != view.seq:
                continue  # it finished just now
            self.slots.mark_timed_out(index, view.seq)
            proc.timed_out = True
            proc.popen.kill()
            self._report_timeout(index, view.started, view.deadline, view.reservation)

    def _report_timeout(
        self, index: int, started: float, deadline: float, res: Reservation | None
    ) -> None:
        job_id, job_type = peek(res.raw) if res is not None else (None, None)
        took_s = time.monotonic() - started
        self.lines.timeout(job_id or "", job_type or "(job)", took_s, deadline - started, index)

    # -- the driver: restart signal, stats ----------------------------------
    def _poll_driver(self, now: float) -> None:
        if now >= self._next_restart_poll:
            self._next_restart_poll = now + _RESTART_POLL_S
            requested = self._restart_time()
            if requested is not None and requested > self._restart_seen:
                self._restart_seen = requested
                self._restart_workers()
        if now >= self._next_stats:
            self._next_stats = now + _STATS_EVERY_S
            self._publish_stats()

    def _restart_time(self) -> float | None:
        try:
            value = self.driver.get_control("restart").get("restart")
        except KashqError as exc:
            self._warn_driver(exc)
            return None
        try:
            return None if value is None else float(value)
        except ValueError:
            return None

    def _restart_workers(self) -> None:
        self.lines.note(
            "supervisor.restart",
            "Restart signal received: each worker finishes its job and is replaced.",
            style="yellow",
        )
        for proc in self._procs.values():
            proc.replace = True
        self._signal_all(signal.SIGTERM)

    def _publish_stats(self, *, final: bool = False) -> None:
        processed = failed = 0
        for index in range(self.options.workers):
            view = self.slots.read(index)
            if view is not None:
                processed += view.processed
                failed += view.failed
        name = self._stats_name
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "connection": self.spec.connection,
            "queues": list(self.spec.queues),
            "workers": len(self._procs),
            "processed": processed,
            "failed": failed,
            "started_at": self._started_at,
            "at": time.time(),
        }
        try:
            if final:
                self.driver.delete_control(name)
            else:
                self.driver.put_control(name, json.dumps(record), ttl_s=_STATS_TTL_S)
        except KashqError as exc:
            self._warn_driver(exc)

    def _warn_driver(self, exc: Exception) -> None:
        if not self._driver_warned:
            self._driver_warned = True
            log.warning("supervisor cannot reach the queue (%s); retrying", exc)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
