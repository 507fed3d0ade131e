"""The ``queue:work`` supervisor: keeps N worker processes alive and enforces hard timeouts.

It runs no user code and does no I/O in its loop. Each worker process records
the job it runs in a shared-memory slot (:mod:`kashq.supervisor.slots`); every
50 ms the supervisor reaps exited workers and replaces them, and kills a worker
whose job ran past its timeout (the replacement then counts that attempt as
failed). A :class:`~kashq.supervisor.control.ControlThread` talks to the
queue backend: ``queue:restart``, the figures for ``queue:monitor``, and
handing back the jobs of workers killed by a forced stop.

Signals: the first SIGTERM/SIGINT asks every worker to finish its job and
exit (up to the grace period, after which they are killed); a second one kills
them at once. Jobs a killed worker held are handed back at once — or, if the
queue cannot be reached, when their lease lapses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from kashq.drivers.base import Driver
from kashq.envelope import peek
from kashq.supervisor.child import COMMAND
from kashq.supervisor.control import ControlThread
from kashq.supervisor.slots import Slots, SlotState, SlotView
from kashq.supervisor.spec import Exit, WorkSpec

log = logging.getLogger(__name__)

_TICK_S = 0.05
KILL_MARGIN_S = 0.5  # past the timeout: an async job's own timeout fires first, cleanly
_QUICK_EXIT_S = 2.0  # a worker ending sooner than this after its start is looping
_MAX_BACKOFF_S = 30.0
_CONTROL_STOP_S = 10.0


class Reporter(Protocol):
    """Where the supervisor says what it does (the CLI's output)."""

    def note(self, event: str, message: str, *, style: str = "", **fields: Any) -> None: ...

    def timeout(
        self, job_id: str, job_type: str, took_s: float, limit_s: float, worker: int
    ) -> None: ...


class ProcessHooks(Protocol):
    """What else happens as worker processes start and end (``--metrics-port``'s server)."""

    def environment(self) -> dict[str, str]:
        """Variables added to each worker process's environment."""
        ...

    def exited(self, pid: int) -> None:
        """Worker process ``pid`` was reaped (quick and local: it runs in the loop)."""
        ...


class Companion(Protocol):
    """A process the command runs beside the workers (the scheduler), started by the caller.

    The supervisor watches it: once it exits it is reaped and reported, and the
    workers go on without it.
    """

    name: str

    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None:
        """Its exit code (reaping it), or None while it runs."""
        ...


@dataclass
class _Process:
    """One worker process and what the supervisor decided about it."""

    index: int
    popen: subprocess.Popen[bytes]
    started: float
    replace: bool = False  # replace it when it exits (restart signal)
    timed_out: bool = False
    told: bool = False  # sent SIGTERM already (once is enough; SIGKILL forces)
    processed_before: int = 0  # finished jobs in the slot before this process ran one


@dataclass
class SupervisorOptions:
    """How the supervisor runs its workers."""

    workers: int = 1
    grace_s: float = 30.0


@dataclass
class _State:
    signals: int = 0
    stopping: bool = False
    forced: bool = False
    grace_deadline: float = 0.0
    fatal: bool = False
    quick_exits: dict[int, int] = field(default_factory=dict)


class Supervisor:
    """Starts, watches and replaces the worker processes of one ``queue:work``."""

    def __init__(
        self,
        spec: WorkSpec,
        options: SupervisorOptions,
        driver: Driver,
        reporter: Reporter,
        hooks: ProcessHooks | None = None,
        *,
        companions: Sequence[Companion] = (),
    ) -> None:
        self.spec = spec
        self.options = options
        self.reporter = reporter
        self.hooks = hooks
        self._companions = list(companions)
        self._env = None if hooks is None else {**os.environ, **hooks.environment()}
        self.slots = Slots.create(options.workers)
        self.control = ControlThread(driver, self._figures)
        self._procs: dict[int, _Process] = {}
        self._scheduled: dict[int, tuple[float, str | None]] = {}  # index -> (at, recover)
        self._state = _State()
        self._restart_seen = self.control.baseline
        self._started_at = time.time()

    # -- the loop ---------------------------------------------------------
    def run(self) -> int:
        """Run until every worker has exited; returns the exit code for the command."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        for index in range(self.options.workers):
            self._start(index, None)
        self.control.start()  # its first report counts the workers
        try:
            while self._procs or self._scheduled:
                self._tick(time.monotonic())
                time.sleep(_TICK_S)
        finally:
            self.control.stop(_CONTROL_STOP_S)
            self.slots.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._state.fatal:
            return 1
        self.reporter.note("supervisor.stopped", "Stopped.", style="bright_black")
        return 1 if self._state.forced and self._state.signals >= 2 else 0

    def _tick(self, now: float) -> None:
        state = self._state
        if state.signals >= 2 and not state.forced:
            self._kill_all("stopping at once")
        elif state.signals == 1 and not state.stopping:
            self._begin_stop("finishing running jobs")
        self._reap(now)
        self._reap_companions()
        self._start_due(now)
        self._enforce_timeouts(now)
        if self.control.restart_at > self._restart_seen and not state.stopping:
            self._restart_seen = self.control.restart_at
            self._restart_workers()
        if state.stopping and now > state.grace_deadline and not state.forced:
            self._kill_all(f"grace period of {self.options.grace_s:g}s is over")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._state.signals += 1

    # -- processes ----------------------------------------------------------
    def _start(self, index: int, recover: str | None) -> None:
        slots_fd, overflow_fd = self.slots.fds(index)
        spec = dataclasses.replace(
            self.spec, index=index, slots_fd=slots_fd, overflow_fd=overflow_fd, recover=recover
        )
        try:
            # A session of its own (so a process group of its own): killing the
            # group takes the job's subprocesses too. Terminal signals (Ctrl-C)
            # reach the supervisor alone, which decides what they mean.
            popen = subprocess.Popen(
                [sys.executable, "-c", COMMAND, spec.to_json()],
                stdin=subprocess.PIPE,
                pass_fds=(slots_fd, overflow_fd),
                env=self._env,
                start_new_session=True,
            )
        except OSError as exc:  # out of processes or memory: try again shortly
            self.reporter.note("worker.error", f"  cannot start worker {index}: {exc}", style="red")
            self._scheduled[index] = (time.monotonic() + 1.0, recover)
            return
        # The count the new process carries on from; settling its predecessor's
        # job (``recover``) counts one more, which is no work of its own.
        view = self.slots.status(index)
        processed = (0 if view is None else view.processed) + (recover is not None)
        self._procs[index] = _Process(index, popen, time.monotonic(), processed_before=processed)
        if self.spec.verbose:
            self.reporter.note(
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
            if self.hooks is not None:
                self.hooks.exited(proc.popen.pid)
            if proc.popen.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.popen.stdin.close()
            if code < 0:  # killed: what its job started dies with it
                _kill_group(proc.popen.pid)
            self._after_exit(proc, code, now)

    def _reap_companions(self) -> None:
        for companion in list(self._companions):
            code = companion.poll()
            if code is None:
                continue
            self._companions.remove(companion)
            if not self._state.stopping:  # a stop ends it too: nothing to report then
                self.reporter.note(
                    f"{companion.name}.exited",
                    f"  the {companion.name} (pid {companion.pid}) {_describe_exit(code)}; "
                    "the workers go on without it",
                    style="red",
                    pid=companion.pid,
                    exit_code=code,
                )

    def _after_exit(self, proc: _Process, code: int, now: float) -> None:
        state, index = self._state, proc.index
        if code == Exit.FATAL:
            state.fatal = True
            if not state.stopping:
                self._begin_stop("a worker could not start")
            return
        if state.stopping:
            if code not in (Exit.DONE, Exit.RECYCLE) and not proc.timed_out:
                self._hand_back(index)
            return  # a job killed for its timeout just now is left to its lease
        if code == Exit.DONE and not proc.replace and (self.spec.once or self.spec.stop_when_empty):
            return  # this worker is done
        recover = None
        if proc.timed_out:
            recover = "was killed: its job ran past its timeout"
        elif code not in (Exit.DONE, Exit.RECYCLE):
            recover = _describe_exit(code)
            self.reporter.note(
                "worker.died",
                f"  worker {index} (pid {proc.popen.pid}) {recover}; starting a new one",
                style="red",
                worker=index,
                pid=proc.popen.pid,
                exit_code=code,
            )
        elif code == Exit.DONE and not proc.told:
            recover = "stopped unexpectedly"  # a SIGTERM from outside: replace it
        if recover is not None:
            self._settle_held(index)
        pause = 0.0 if code == Exit.RECYCLE else self._pause_before_restart(proc, now)
        self._scheduled[index] = (now + pause, recover)

    def _pause_before_restart(self, proc: _Process, now: float) -> float:
        """No pause, unless the worker keeps dying right after it starts (1 s, 2 s … 30 s).

        A worker that finished a job before it died was working, not looping:
        frequent deaths (kill -9, the OOM killer) must not stall the queue.
        """
        if (
            proc.timed_out
            or proc.replace
            or now - proc.started >= _QUICK_EXIT_S
            or self._finished_a_job(proc)
        ):
            self._state.quick_exits.pop(proc.index, None)
            return 0.0
        count = self._state.quick_exits[proc.index] = self._state.quick_exits.get(proc.index, 0) + 1
        return 0.0 if count == 1 else min(2.0 ** (count - 2), _MAX_BACKOFF_S)

    def _finished_a_job(self, proc: _Process) -> bool:
        view = self.slots.status(proc.index)
        return view is not None and view.processed > proc.processed_before

    def _start_due(self, now: float) -> None:
        if self._state.stopping:
            self._scheduled.clear()
            return
        for index, (at, recover) in list(self._scheduled.items()):
            if at <= now:
                del self._scheduled[index]
                self._start(index, recover)

    def _signal_all(self, signum: int) -> None:
        """SIGTERM every worker not told yet (its job finishes), or SIGKILL every
        worker's process group (the job's subprocesses too)."""
        for proc in self._procs.values():
            if signum == signal.SIGKILL:
                _kill_group(proc.popen.pid)
                continue
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
        running = sum(self._slot_state(i) is SlotState.RUNNING for i in self._procs)
        self.reporter.note(
            "supervisor.stopping",
            f"Stopping ({why}): {_finishing(running, self.options.grace_s)}.",
            style="yellow",
            running=running,
        )
        self._signal_all(signal.SIGTERM)

    def _kill_all(self, why: str) -> None:
        self._state.stopping = self._state.forced = True
        self._scheduled.clear()
        self.reporter.note(
            "supervisor.killing",
            f"Stopping at once ({why}): running jobs are handed back to the queue.",
            style="red",
        )
        self._signal_all(signal.SIGKILL)

    def _slot_state(self, index: int) -> SlotState | None:
        view = self.slots.status(index)
        return None if view is None else view.state

    def _settle_held(self, index: int) -> SlotView | None:
        """A dead worker's completed jobs are acknowledged (their batch jobs counted) and
        its waiting ones given back now, before their leases lapse, whenever its
        replacement starts; the replacement settles its running job (it has the job's
        code) and repeats this, harmlessly."""
        view = self.slots.read(index)
        if view is not None:
            done, waiting = view.left_behind()
            if done or waiting:
                self.control.settle_left_behind(done, waiting)
        return view

    def _hand_back(self, index: int) -> None:
        """A worker killed while stopping: its jobs go back now, not after their leases
        (the completed ones are acknowledged)."""
        view = self._settle_held(index)
        if view is None:
            return
        if view.reservation is not None and view.state is SlotState.RUNNING:
            self.control.hand_back(view.reservation)
        elif view.reservation is not None and view.state is SlotState.RETURNED:
            self.control.settle_returned(view.reservation)

    def _restart_workers(self) -> None:
        self.reporter.note(
            "supervisor.restart",
            "Restart signal received: each worker finishes its job and is replaced.",
            style="yellow",
        )
        for proc in self._procs.values():
            proc.replace = True
        self._signal_all(signal.SIGTERM)

    # -- timeouts -----------------------------------------------------------
    def _enforce_timeouts(self, now: float) -> None:
        for index, proc in self._procs.items():
            if proc.timed_out:
                continue
            view = self.slots.status(index)
            if view is None or view.state is not SlotState.RUNNING or not view.deadline:
                continue
            if now < view.deadline + KILL_MARGIN_S or view.pid != proc.popen.pid:
                continue  # in time, or a predecessor's job the new process is settling
            again = self.slots.read(index)  # with the reservation, for the report
            if again is None or again.seq != view.seq:
                continue  # it finished just now
            self.slots.mark_timed_out(index, view.seq)
            proc.timed_out = True
            _kill_group(proc.popen.pid)
            job_id, job_type = peek(again.reservation.raw) if again.reservation else (None, None)
            self.reporter.timeout(
                job_id or "", job_type or "(job)", now - view.started, view.timeout_s, index
            )

    # -- figures --------------------------------------------------------------
    def _figures(self) -> dict[str, Any]:
        """What the supervisor publishes for ``queue:monitor`` (read by the control thread)."""
        processed = failed = 0
        processes: list[dict[str, Any]] = []
        wall, now = time.time(), time.monotonic()
        for index in range(self.options.workers):
            view = self.slots.status(index)
            if view is not None:
                processed += view.processed
                failed += view.failed
            proc = self._procs.get(index)
            if proc is not None:
                processes.append(self._process_figures(proc, view, wall - now))
        return {
            "connection": self.spec.connection,
            "queues": list(self.spec.queues),
            "workers": len(self._procs),
            "processed": processed,
            "failed": failed,
            "started_at": self._started_at,
            "processes": processes,
        }

    def _process_figures(
        self, proc: _Process, view: SlotView | None, to_wall: float
    ) -> dict[str, Any]:
        """One worker process for the dashboard: pid, state, current job, jobs done, RSS."""
        pid = proc.popen.pid
        figures: dict[str, Any] = {
            "pid": pid, "started_at": proc.started + to_wall, "rss_bytes": rss_bytes(pid),
            "state": "starting", "processed": 0, "failed": 0,
        }  # fmt: skip
        if view is None or view.pid != pid:
            return figures
        # The slot's counts: this worker's and those of the processes it replaced.
        figures["processed"], figures["failed"] = view.processed, view.failed
        figures["state"] = view.state.name.lower()
        if view.state is SlotState.RUNNING:
            full = self.slots.read(proc.index)
            if full is not None and full.seq == view.seq and full.reservation is not None:
                job_id, job_type = peek(full.reservation.raw)
                figures["job"] = {
                    "id": job_id or full.reservation.id, "type": job_type or "(job)",
                    "queue": full.reservation.queue, "since": view.started + to_wall,
                }  # fmt: skip
        return figures


def rss_bytes(pid: int) -> int | None:
    """The resident memory of process ``pid`` in bytes (Linux ``/proc``); None elsewhere."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _kill_group(pid: int) -> None:
    """SIGKILL the process group of worker ``pid`` (it leads it): the worker and what it started.

    Safe after the worker was reaped: while any process of the group lives,
    its id is not handed to a new process.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _finishing(running: int, grace_s: float) -> str:
    """What a stop waits for, in words: nothing, or the running jobs for up to the grace."""
    if running == 0:
        return "no job is running"
    jobs = "the running job finishes" if running == 1 else f"{running} running jobs finish"
    return f"{jobs} first, for up to {grace_s:g}s"


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
