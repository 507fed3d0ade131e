"""The chaos harness: real ``queue:work`` processes, a ledger, faults, and the invariant.

A scenario dispatches jobs of :mod:`tests.chaos.chaos_jobs`, each under a
fresh UUID, runs ``kashq queue:work`` on them while it injects faults, waits
until every job has reached a terminal state, and then checks the invariant:

- every dispatched job is **completed** (a ``done`` line in the ledger), **in
  failed_jobs**, or (in scenarios that cancel jobs) **cancelled**: exactly
  one of them, and only dispatched jobs ran;
- the queues are empty: nothing left ready, delayed or reserved;
- jobs that completed more than once (duplicates) are at most the jobs that
  were in flight at the faults (each fault states its bound).

The ledger is a file the chaos never touches. :meth:`Chaos.check` prints a
one-line summary (dispatched, completed, failed, duplicates, max recovery
time, see :func:`_recovery_s`), repeated in the run's closing report, so a
run is a report as well as a pass.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kashq.drivers.base import Driver
from kashq.exceptions import DriverError
from kashq.failed.base import FailedJobStore
from tests.chaos.chaos_jobs import Work
from tests.e2e.work_app import Worker, kashq_executable
from tests.support import report

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0  # KASHQ_RETRY_AFTER of every scenario: a lost job comes back quickly
PREFETCH = 8  # KASHQ_PREFETCH of every scenario (the Redis default): the most jobs one worker holds
RUNNING_PER_WORKER = 1
"""What a SIGKILLed worker process may run twice: the job it was running. The rest of its
batch (completed, acknowledgements unsent; prefetched, not started) is in its slot, which
its replacement settles."""


@dataclass
class Fault:
    """One injected fault, from ``began`` to ``ended``; ``in_flight`` bounds its duplicates.

    ``recovery_s``, when a scenario measures it itself, replaces the estimate
    of :func:`_recovery_s`.
    """

    label: str
    began: float
    ended: float
    in_flight: int
    replaced: bool = False  # a worker process died: recovery waits for its replacement
    recovery_s: float | None = None


@dataclass(frozen=True)
class Line:
    kind: str  # start | done | kill
    job_id: str
    pid: int
    at: float
    extra: str


class Ledger:
    """The ``O_APPEND`` file the jobs write to (see :mod:`tests.chaos.chaos_jobs`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[Line]:
        if not self.path.exists():
            return []
        parsed = []
        for text in self.path.read_text().splitlines():
            kind, job_id, pid, at, *extra = text.split()
            parsed.append(Line(kind, job_id, int(pid), float(at), " ".join(extra)))
        return parsed

    def done(self) -> Counter[str]:
        return Counter(line.job_id for line in self.lines() if line.kind == "done")


@dataclass
class Summary:
    scenario: str
    dispatched: int
    completed: int
    failed: int
    duplicates: int
    duplicate_bound: int
    runs: int
    faults: Counter[str]
    max_recovery_s: float

    def __str__(self) -> str:
        faults = ", ".join(f"{n} {label}" for label, n in sorted(self.faults.items()))
        return (
            f"chaos[{self.scenario}]: dispatched {self.dispatched} · completed {self.completed}"
            f" · failed {self.failed} · duplicates {self.duplicates}"
            f" (bound {self.duplicate_bound}) · runs {self.runs} · faults: {faults}"
            f" · max recovery {self.max_recovery_s:.2f}s"
        )


class Workers(Worker):
    """One running ``kashq queue:work`` (the supervisor and its worker processes)."""

    def kill_one(self, rng: random.Random, min_age_s: float = 0.0) -> int | None:
        """SIGKILL one worker process (at least ``min_age_s`` old); returns its pid."""
        now = time.monotonic()
        old = [pid for pid in self.children() if _age_s(pid, now) >= min_age_s]
        if not old:
            return None
        pid = rng.choice(old)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM (running jobs finish), then SIGKILL whatever is left; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill_group()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # a worker the supervisor left behind
        return self.popen.wait(30)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _age_s(pid: int, now: float) -> float:
    """Seconds since process ``pid`` started (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    started_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return now - started_ticks / _CLOCK_TICKS


@dataclass
class Chaos:
    """One scenario: its directory, ledger and environment, the jobs and the faults."""

    name: str
    root: Path
    env: dict[str, str]
    dispatched: dict[str, float] = field(default_factory=dict)  # job id -> earliest start
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, root: Path, settings: dict[str, str]) -> Chaos:
        """A scenario whose workers run with ``settings`` (``KASHQ_*``) over the defaults here."""
        ledger = root / "ledger.txt"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASHQ_")}
        env.update(
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            NO_COLOR="1",
            KASHQ_TEST_CHAOS_LEDGER=str(ledger),
            KASHQ_RETRY_AFTER=str(LEASE_S),
            KASHQ_TIMEOUT="1.5",
            KASHQ_BACKOFF="0",
            KASHQ_PREFETCH=str(PREFETCH),
            KASHQ_DATABASE_URL=f"sqlite:///{root / 'failed.sqlite'}",
        )
        env.update(settings)
        return cls(name, root, env)

    @property
    def ledger(self) -> Ledger:
        return Ledger(Path(self.env["KASHQ_TEST_CHAOS_LEDGER"]))

    # -- jobs -------------------------------------------------------------
    def dispatch(self, driver: Driver, jobs: list[Work]) -> list[str]:
        """Push ``jobs`` (each under a fresh UUID), remembering when each may start."""
        now = time.time()
        envelopes = []
        for job in jobs:
            env = job.with_id(uuid.uuid4()).to_envelope(default_queue="default", now=now)
            self.dispatched[env.id] = env.available_at
            envelopes.append(env)
        for start in range(0, len(envelopes), 500):
            driver.push_many(envelopes[start : start + 500])
        return [env.id for env in envelopes]

    # -- workers ----------------------------------------------------------
    def start_work(self, *args: str) -> Workers:
        """``kashq queue:work --import tests.chaos.chaos_jobs --json --quiet ARGS``."""
        log = self.root / f"work-{uuid.uuid4().hex[:6]}.log"
        with log.open("w") as handle:
            popen = subprocess.Popen(
                [kashq_executable(), "queue:work", "--import", "tests.chaos.chaos_jobs",
                 "--json", "--quiet", *args],
                cwd=self.root, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True, text=True,
            )  # fmt: skip
        return Workers(popen, log)

    # -- faults -----------------------------------------------------------
    @contextlib.contextmanager
    def fault(self, label: str, in_flight: int) -> Iterator[None]:
        """Record the fault made inside the block (``in_flight``: jobs it may run twice)."""
        began = time.time()
        try:
            yield
        finally:
            self.faults.append(Fault(label, began, time.time(), in_flight))

    def worker_killed(self, label: str) -> None:
        """Record a worker process SIGKILLed just now (it ran at most one job)."""
        now = time.time()
        self.faults.append(Fault(label, now, now, RUNNING_PER_WORKER, replaced=True))

    def completed(self) -> int:
        return len(self.ledger.done())

    def wait_for(self, what: str, condition: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"chaos[{self.name}]: timed out waiting for {what}")
            time.sleep(0.1)

    def wait_settled(
        self,
        driver: Driver,
        store: FailedJobStore,
        timeout_s: float = 120,
        cancelled: Callable[[], set[str]] = set,
    ) -> None:
        """Wait until every dispatched job is completed, failed or ``cancelled()`` and the
        queue is empty."""

        left: list[str] = []  # what the last look found unsettled, for a timeout's message

        def settled() -> bool:
            try:
                sizes = driver.sizes(["default"])["default"]
            except DriverError:  # a server the scenario restarts is on its way back
                left[:] = ["the queue unreachable"]
                return False
            ended = set(self.ledger.done()) | {job.uuid for job in store.all()} | cancelled()
            missing = [job_id for job_id in self.dispatched if job_id not in ended]
            left[:] = [f"queue sizes {sizes}", f"{len(missing)} not ended: {missing[:5]}"]
            return not sizes.total and not missing

        try:
            self.wait_for("every job to complete or fail", settled, timeout_s)
        except pytest.fail.Exception as timed_out:
            pytest.fail(f"{timed_out} ({'; '.join(left)})")

    # -- the invariant ----------------------------------------------------
    def check(
        self, driver: Driver, store: FailedJobStore, cancelled: frozenset[str] = frozenset()
    ) -> Summary:
        """Assert the invariant (see the module docstring); print and return the summary.

        ``cancelled`` are the jobs that ended cancelled (a scenario that cancels knows them).
        """
        lines = self.ledger.lines()
        done = Counter(line.job_id for line in lines if line.kind == "done")
        failed = Counter(job.uuid for job in store.all())
        faults = self.faults + [
            Fault(f"self-kill at {line.extra}", line.at, line.at, RUNNING_PER_WORKER, replaced=True)
            for line in lines
            if line.kind == "kill"
        ]
        summary = Summary(
            scenario=self.name,
            dispatched=len(self.dispatched),
            completed=len(done),
            failed=len(failed),
            duplicates=sum(n - 1 for n in done.values()),
            duplicate_bound=sum(fault.in_flight for fault in faults),
            runs=sum(line.kind == "start" for line in lines),
            faults=Counter(fault.label for fault in faults),
            max_recovery_s=max((_recovery_s(fault, lines) for fault in faults), default=0.0),
        )
        report.add(str(summary))
        sizes = driver.sizes(["default"])["default"]
        assert sizes.total == 0, f"jobs left in the queue: {sizes}"
        strangers = (set(done) | set(failed)) - set(self.dispatched)
        assert not strangers, f"jobs that were never dispatched ran: {sorted(strangers)[:5]}"
        ends = {i: (i in done) + (i in failed) + (i in cancelled) for i in self.dispatched}
        missing = [i for i, n in ends.items() if n == 0]
        assert not missing, (
            f"{len(missing)} jobs lost (neither completed, failed nor cancelled): {missing[:5]}"
        )
        both = [i for i, n in ends.items() if n > 1]
        assert not both, f"{len(both)} jobs ended two ways: {both[:5]}"
        twice = [i for i, n in failed.items() if n > 1]
        assert not twice, f"jobs recorded in failed_jobs more than once: {twice[:5]}"
        early = [
            line.job_id
            for line in lines
            if line.kind == "start" and line.at < self.dispatched[line.job_id] - 0.001
        ]
        assert not early, f"{len(early)} jobs started before they were due: {early[:5]}"
        assert summary.duplicates <= summary.duplicate_bound, summary
        return summary


def _recovery_s(fault: Fault, lines: list[Line]) -> float:
    """Seconds from the end of ``fault`` until the queue was seen serving jobs again.

    That is when the ``in_flight + 1``-th job that first started after the
    fault completed: more jobs than the workers could have held in memory
    across the fault, so the server handed out new ones. After a killed worker
    (``fault.replaced``) it is the first job completed by a process that had
    not run one before: the replacement's start-up and first job.
    """
    if fault.recovery_s is not None:
        return fault.recovery_s
    first_seen: dict[int, float] = {}
    first_start: dict[str, float] = {}
    for line in lines:
        first_seen.setdefault(line.pid, line.at)
        if line.kind == "start":
            first_start.setdefault(line.job_id, line.at)
    if fault.replaced:
        needed = 1
        after = [
            line.at
            for line in lines
            if line.kind == "done" and line.at > fault.ended and first_seen[line.pid] > fault.began
        ]
    else:
        needed = fault.in_flight + 1
        after = [
            line.at
            for line in lines
            if line.kind == "done" and first_start[line.job_id] > fault.ended
        ]
    after.sort()
    return after[needed - 1] - fault.ended if len(after) >= needed else 0.0
