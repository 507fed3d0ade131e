"""One worker process of ``kashq queue:work`` (started by the supervisor, see :data:`COMMAND`).

It imports the job modules, settles whatever job its predecessor in the same
slot left behind, then consumes one job at a time, recording each in its slot
so the supervisor can enforce timeouts. SIGTERM (from the supervisor) means
"finish the current job, then exit"; a second SIGTERM exits at once, leaving
the job to its lease. SIGINT is ignored from the first instruction on: Ctrl-C
on a terminal reaches every process of the group, and the supervisor alone
decides what it means. When the supervisor's pipe on stdin closes (it died),
the process finishes its job and exits.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from kashq.cli.joblines import JobLines
from kashq.config import load_settings
from kashq.exceptions import JobTimeout, KashqError
from kashq.imports import ImportFailed, import_job_modules
from kashq.manager import QueueManager
from kashq.supervisor.slots import Slots, SlotState, SlotWriter
from kashq.supervisor.spec import Exit, WorkSpec
from kashq.worker.events import EventKind, JobEvent
from kashq.worker.worker import Worker, WorkerLost

COMMAND = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from kashq.supervisor.child import main; main()"
)
"""``python -c COMMAND SPEC``: SIGINT is ignored before anything heavy is imported."""

_RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux


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

    # -- signals and the supervisor's pipe ------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            os._exit(Exit.FORCED)

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

    # -- running ----------------------------------------------------------
    def run(self) -> int:
        spec = self.spec
        lines = JobLines(spec.output, verbose=spec.verbose, worker=spec.index)
        try:
            import_job_modules(spec.imports)
            manager = QueueManager(load_settings(connection=spec.connection))
            options = manager.worker_options(**spec.worker_overrides())
            driver = manager.connection(spec.connection)
            store = manager.failed_store(spec.connection)
        except ImportFailed as exc:
            lines.note("worker.fatal", f"{exc}\n{exc.details}", style="red", error=str(exc))
            return Exit.FATAL
        except KashqError as exc:
            lines.note("worker.fatal", str(exc), style="red", error=str(exc))
            return Exit.FATAL
        slots = Slots(spec.slots_fd, spec.index + 1)
        writer = slots.writer(spec.index)
        worker = Worker(driver, store, options, listeners=[self._slot_listener(writer), lines])
        self._worker = worker
        started = time.monotonic()
        try:
            self._recover(worker, slots, writer)
            if spec.once:
                if not self._stopping:
                    worker.run_next(wait_s=options.sleep_s)
            else:
                self._consume(worker)
        except KashqError as exc:
            lines.note("worker.error", f"worker {spec.index}: {exc}", style="red", error=str(exc))
        finally:
            writer.idle()
            lines.flush()
            driver.close()
        if self.recycle or self._limit_reached(worker, time.monotonic() - started):
            return Exit.RECYCLE
        return Exit.DONE

    @property
    def _stopping(self) -> bool:
        return bool(self.signals) or self.orphaned

    def _consume(self, worker: Worker) -> None:
        worker.start(1)
        while worker.running:
            if self._stopping:
                worker.request_stop()
            time.sleep(0.05)
        worker.join()

    def _limit_reached(self, worker: Worker, ran_s: float) -> bool:
        """Did the worker stop for --max-jobs or --max-time (so it is to be replaced)?"""
        if self._stopping or self.spec.once:
            return False
        opts = worker.options
        if opts.max_jobs is not None and worker.stats.processed >= opts.max_jobs:
            return True
        return opts.max_time_s is not None and ran_s >= opts.max_time_s

    def _slot_listener(self, writer: SlotWriter) -> Callable[[JobEvent], None]:
        memory_bytes = None if self.spec.memory_mb is None else self.spec.memory_mb * 1024 * 1024

        def on_event(event: JobEvent) -> None:
            kind = event.kind
            if kind is EventKind.STARTED:
                assert event.reservation is not None
                now = time.monotonic()
                deadline = now + event.timeout_s if event.timeout_s else 0.0
                writer.running(event.reservation, deadline, now)
            elif kind is EventKind.IDLE:
                writer.idle()
            else:
                writer.finished(
                    completed=kind is EventKind.COMPLETED,
                    failed=kind in (EventKind.FAILED, EventKind.PARKED),
                )
                if memory_bytes is not None and _peak_rss() > memory_bytes:
                    self.recycle = True
                    if self._worker is not None:
                        self._worker.request_stop()  # before its next reserve

        return on_event

    def _recover(self, worker: Worker, slots: Slots, writer: SlotWriter) -> None:
        """Settle the job a predecessor in this slot left: ack it, or count its attempt failed."""
        view = slots.read(self.spec.index)
        if view is None or view.reservation is None or self.spec.recover is None:
            writer.reset()
            return
        res = view.reservation
        if view.state is SlotState.COMPLETED:
            worker.driver.ack(res)
        elif view.timed_out:
            worker.abandon(res, JobTimeout(round(view.deadline - view.started, 3), killed=True))
        else:
            worker.abandon(res, WorkerLost(f"its worker process {self.spec.recover}"))
        writer.reset()


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    process = WorkerProcess(WorkSpec.from_json(args[0]))
    process.install_signals()
    process.watch_supervisor()
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("kashq.jobs").setLevel(logging.ERROR)  # each job has its own line
    code = process.run()
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
