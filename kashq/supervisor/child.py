"""One worker process of ``kashq queue:work`` (started by the supervisor, see :data:`COMMAND`).

It imports the job modules, settles whatever job its predecessor in the same
slot left behind, then consumes one job at a time, recording each in its slot
so the supervisor can enforce timeouts. The process leads a session (so a
process group) of its own: the supervisor's SIGKILL of the group — a timeout,
a forced stop — takes the job's subprocesses with it. SIGTERM means "finish
the current job, then exit"; further SIGTERMs change nothing (a service
manager may send one to every process as well as the supervisor). SIGINT is
ignored from the first instruction on: Ctrl-C on a terminal reaches the
supervisor alone, which decides what it means, but a SIGINT sent to every
process must not stop a job. When the supervisor's pipe on stdin closes (it
died), the process finishes its job and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from kashq.config import load_settings
from kashq.drivers.base import Reservation
from kashq.exceptions import ConfigError, ImportFailed, JobTimeout, KashqError, WorkerLost
from kashq.imports import import_job_modules
from kashq.jobevents import EventKind, JobEvent
from kashq.manager import QueueManager
from kashq.metrics import DefaultMetrics
from kashq.supervisor.control import settle_left_behind, settle_returned
from kashq.supervisor.lines import JobLines
from kashq.supervisor.slots import Slots, SlotState, SlotView, SlotWriter
from kashq.supervisor.spec import Exit, WorkSpec
from kashq.worker.worker import Worker

COMMAND = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "early = []; signal.signal(signal.SIGTERM, lambda *_: early.append(1)); "
    "from kashq.supervisor.child import main; main(sys.argv[1:], len(early))"
)
"""``python -c COMMAND SPEC``: signals are caught before anything heavy is imported."""

log = logging.getLogger("kashq.worker")


class WorkerProcess:
    """The state of this worker process: its worker, its slot, why it stops."""

    def __init__(self, spec: WorkSpec) -> None:
        self.spec = spec
        # Plain flags, not Events: a signal handler must never take a lock the
        # interrupted main thread may hold.
        self.signals = 0
        self.orphaned = False
        self.recycle = False
        self._worker: Worker | None = None
        self._memory_limit = 0 if spec.memory_mb is None else int(spec.memory_mb * 1024 * 1024)
        self._memory_checked_at = float("-inf")

    # -- signals and the supervisor's pipe ------------------------------
    def install_signals(self, early: int = 0) -> None:
        self.signals += early
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1

    def watch_supervisor(self) -> None:
        def watch() -> None:
            try:
                while sys.stdin.buffer.read(1024):
                    pass
            except (OSError, ValueError):
                pass
            self.orphaned = True
            if self._worker is not None:
                self._worker.request_stop()

        threading.Thread(target=watch, name="kashq-supervisor-watch", daemon=True).start()

    @property
    def stopping(self) -> bool:
        return bool(self.signals) or self.orphaned

    # -- running ----------------------------------------------------------
    def run(self) -> int:
        spec = self.spec
        lines = JobLines(spec.output, verbose=spec.verbose, worker=spec.index)
        try:
            import_job_modules(spec.imports)
            manager = QueueManager(load_settings(connection=spec.connection))
            manager.worker_options(**spec.worker_overrides())  # bad options fail here, once
        except ImportFailed as exc:
            lines.note("worker.fatal", f"{exc}\n{exc.details}", style="red", error=str(exc))
            return Exit.FATAL
        except ConfigError as exc:
            lines.note("worker.fatal", str(exc), style="red", error=str(exc))
            return Exit.FATAL
        self._check_memory_baseline(lines)
        slots = Slots(spec.slots_fd, spec.index + 1, {spec.index: spec.overflow_fd})
        writer = slots.writer(spec.index)
        started = time.monotonic()
        try:
            # The manager's worker records events and sends alerts; the slot and
            # the output lines listen too.
            worker = manager.worker(**spec.worker_overrides())
            worker.add_listener(self._slot_listener(writer))
            worker.track_holdings(writer)  # its batches too, for a successor to settle
            worker.add_listener(lines)
            self._worker = worker
            self._recover(worker, slots.read(spec.index), writer)
            with DefaultMetrics.worker_process():  # counted in kashq_workers (--metrics-port)
                if spec.once:
                    if not self.stopping:
                        worker.run_next(wait_s=worker.options.sleep_s)
                else:
                    self._consume(worker)
        except KashqError as exc:  # the queue is unreachable: the supervisor starts another
            lines.note("worker.error", f"worker {spec.index}: {exc}", style="red", error=str(exc))
            return Exit.ERROR
        finally:
            manager.close()  # flushes events and alerts
        writer.idle()
        if self.recycle or self._limit_reached(worker, time.monotonic() - started):
            return Exit.RECYCLE
        return Exit.DONE

    def _consume(self, worker: Worker) -> None:
        worker.start(1)
        while worker.running:
            if self.stopping:
                worker.request_stop()
            time.sleep(0.05)
        worker.join()

    def _limit_reached(self, worker: Worker, ran_s: float) -> bool:
        """Did the worker stop for --max-jobs or --max-time (so it is to be replaced)?"""
        if self.stopping or self.spec.once:
            return False
        opts = worker.options
        if opts.max_jobs is not None and worker.stats.processed >= opts.max_jobs:
            return True
        return opts.max_time_s is not None and ran_s >= opts.max_time_s

    # -- the slot ---------------------------------------------------------
    def _slot_listener(self, writer: SlotWriter) -> Callable[[JobEvent], None]:
        def on_event(event: JobEvent) -> None:
            kind = event.kind
            if kind is EventKind.PROGRESS:
                return  # the job runs on
            if kind is EventKind.STARTED:
                assert event.reservation is not None
                writer.running(event.reservation, time.monotonic(), event.timeout_s)
            elif kind is EventKind.RAN:
                writer.settling(ok=event.error is None)  # no timeout for failed() and the ack
            elif kind is EventKind.IDLE:
                writer.idle()
            elif kind is EventKind.ABORTING:  # cancelled: killed if it still runs after its grace
                grace_s = self._worker.options.cancel_grace_s if self._worker else 0.0
                writer.cut_short(event.job_id, time.monotonic() + grace_s)
            else:
                writer.finished(
                    completed=kind is EventKind.COMPLETED,
                    # A parked failure counts once, when parked, not at each recording attempt.
                    failed=kind in (EventKind.FAILED, EventKind.PARKED)
                    and not event.recording_again,
                )
                self._check_memory(event.duration_s)

        return on_event

    def _recover(self, worker: Worker, view: SlotView | None, writer: SlotWriter) -> None:
        """Settle the jobs a predecessor in this slot left: acknowledge the completed ones,
        give the waiting ones back, count the attempt of the running one failed, and finish
        one whose ``handle()`` had returned (:func:`~kashq.supervisor.control.settle_returned`).

        The slot is cleared first, so a crash while settling leaves the jobs to
        their leases rather than to a loop of replacements.
        """
        writer.reset()
        if view is None or self.spec.recover is None:
            return
        settle_left_behind(worker.driver, *view.left_behind())
        if view.reservation is None or view.state is SlotState.COMPLETED:
            return
        res: Reservation = view.reservation
        if not worker.driver.extend(res, worker.options.lease_s):
            return  # its lease lapsed and another worker has it now
        if view.timed_out:
            worker.abandon(res, JobTimeout(view.timeout_s, killed=True))
        elif view.state is SlotState.RETURNED:
            settle_returned(worker.driver, res)
        elif view.state is SlotState.RUNNING:
            worker.abandon(res, WorkerLost(f"its worker process {self.spec.recover}"))
        else:  # SETTLING: handle() had raised, and recording that did not finish
            worker.abandon(
                res, WorkerLost(f"its worker process {self.spec.recover} after the job raised")
            )

    # -- memory -------------------------------------------------------------
    def _check_memory_baseline(self, lines: JobLines) -> None:
        if self._memory_limit and _rss_bytes() > self._memory_limit:
            used = _rss_bytes() // 2**20
            lines.note(
                "worker.warning",
                f"worker {self.spec.index} uses {used} MB right after start-up, more than "
                f"--memory {self.spec.memory_mb:g}: the memory limit is ignored",
                style="yellow",
                worker=self.spec.index,
                rss_mb=used,
            )
            self._memory_limit = 0

    def _check_memory(self, job_s: float | None) -> None:
        """Replace this worker after its job if it uses more than ``--memory``.

        Reading the resident size costs a system call or two (about a tenth of a
        no-op job's time), so it is read after a job that ran for a while, or at
        least every ``_MEMORY_EVERY_S`` while jobs come fast.
        """
        if not self._memory_limit:
            return
        now = time.monotonic()
        if (job_s or 0.0) < _SHORT_JOB_S and now - self._memory_checked_at < _MEMORY_EVERY_S:
            return
        self._memory_checked_at = now
        if _rss_bytes() > self._memory_limit:
            log.warning(
                "worker %d uses %d MB, over --memory %g: replacing it after this job",
                self.spec.index,
                _rss_bytes() // 2**20,
                self.spec.memory_mb,
            )
            self.recycle = True
            if self._worker is not None:
                self._worker.request_stop()  # before its next reserve


_SHORT_JOB_S = 0.01  # jobs shorter than this seldom grow memory much: checked at most ...
_MEMORY_EVERY_S = 0.25  # ... this often
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    """Resident memory now (Linux), or the peak where the system does not tell."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def main(argv: list[str], early_signals: int = 0) -> None:
    process = WorkerProcess(WorkSpec.from_json(argv[0]))
    process.install_signals(early_signals)
    process.watch_supervisor()
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("kashq.jobs").setLevel(logging.ERROR)  # each job has its own line
    logging.getLogger("kashq.config").setLevel(logging.ERROR)  # the supervisor warned once
    try:
        code = process.run()
    except Exception:
        log.exception("worker %d crashed", process.spec.index)
        code = Exit.ERROR
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    os._exit(code)
