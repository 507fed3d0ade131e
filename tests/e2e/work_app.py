"""A tiny application for ``queue:work`` end-to-end tests: its job module and how to drive it.

:data:`JOBS_MODULE` is written into the test's directory as ``e2e_jobs.py``;
dispatching happens in a subprocess so the job classes never enter the test
process's registry. Every job that completes appends ``<job id> <pid>`` to
``ledger.txt`` (one ``O_APPEND`` write, so concurrent workers never tear a line).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL

JOBS_MODULE = """
import os, re, signal, subprocess, time
from pathlib import Path
from kashq import Job

HERE = Path(__file__).parent
_HOLD = []


def record(job_id: str) -> None:
    fd = os.open(HERE / "ledger.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{job_id} {os.getpid()}\\n".encode())
    os.close(fd)


class Record(Job):
    n: int
    pause: float = 0.0

    def handle(self) -> None:
        if self.pause:
            time.sleep(self.pause)
        record(self.envelope.id)


class SlowOnce(Job):
    # sleeps 20 s the first time it runs, finishes at once after

    def handle(self) -> None:
        flag = HERE / f"slow-{self.envelope.id}"
        if not flag.exists():
            flag.touch()
            time.sleep(20)
        record(self.envelope.id)


class SlowHook(Job):
    tries = 1
    timeout = 2

    def handle(self) -> None:
        time.sleep(1.5)
        raise RuntimeError("the real cause")

    def failed(self, error: BaseException) -> None:
        time.sleep(1.5)  # past the job's timeout: the hook must not be killed
        with open(HERE / "hooks.txt", "a") as hooks:
            hooks.write(self.envelope.id + "\\n")


class Flaky(Job):
    tries = 2
    backoff = 0

    def handle(self) -> None:
        if (HERE / "fail.flag").exists():
            raise RuntimeError("fail.flag is set")
        record(self.envelope.id)


class Sleeper(Job):
    tries = 2
    backoff = 0

    def handle(self) -> None:
        time.sleep(30)
        record(self.envelope.id)


class Backtrack(Job):
    tries = 1

    def handle(self) -> None:
        re.match(r"(a+)+$", "a" * 64 + "b")  # holds the GIL for ages, inside C code
        record(self.envelope.id)


class Hog(Job):
    mb: int

    def handle(self) -> None:
        _HOLD.append(bytearray(self.mb * 1024 * 1024))
        record(self.envelope.id)


class BigSleeper(Job):
    # a payload of megabytes, and a handle() that runs past its timeout
    blob: str
    tries = 1
    timeout = 1

    def handle(self) -> None:
        time.sleep(20)
        record(self.envelope.id)


class SpawnsSleep(Job):
    # starts `sleep 1000` and waits on it: past its timeout, or until killed
    tries = 1
    timeout = 1

    def handle(self) -> None:
        child = subprocess.Popen(["sleep", "1000"])
        (HERE / f"sleep-{self.envelope.id}").write_text(str(child.pid))
        child.wait()


def started(job_id: str) -> None:
    fd = os.open(HERE / "started.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{job_id}\\n".encode())
    os.close(fd)


class Polite(Job):
    # runs until cancelled, checking between steps

    def handle(self) -> None:
        started(self.envelope.id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.cancelled():
            time.sleep(0.05)
        record(self.envelope.id)


class Stubborn(Job):
    # never checks: only a kill stops it

    def handle(self) -> None:
        started(self.envelope.id)
        time.sleep(60)
        record(self.envelope.id)


class Napper(Job):
    async def handle(self) -> None:
        import asyncio

        started(self.envelope.id)
        await asyncio.sleep(60)
        record(self.envelope.id)


class DiesOnce(Job):
    tries = 2
    backoff = 0

    def handle(self) -> None:
        flag = HERE / f"died-{self.envelope.id}"
        if not flag.exists():
            flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        record(self.envelope.id)
"""


def kashq_executable() -> str:
    beside = Path(sys.executable).parent / "kashq"
    return str(beside) if beside.is_file() else "kashq"


@dataclass
class App:
    """One test's application directory and the environment its commands run with."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    # -- dispatching ------------------------------------------------------
    def dispatch(self, expression: str) -> list[str]:
        """Dispatch ``expression`` (a list of jobs built from module ``e2e_jobs``); returns ids."""
        code = (
            "import json, kashq, e2e_jobs as j\n"
            f"print(json.dumps(kashq.dispatch_many({expression})))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        ids: list[str] = json.loads(proc.stdout)
        return ids

    # -- the command line -------------------------------------------------
    def kashq(self, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kashq_executable(), *args], cwd=self.root, env=self.env,
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    def start_work(self, *args: str) -> Worker:
        """``kashq queue:work --import e2e_jobs ARGS`` in its own process group."""
        log = self.root / f"work-{uuid.uuid4().hex[:6]}.log"
        handle = log.open("w")
        popen = subprocess.Popen(
            [kashq_executable(), "queue:work", "--import", "e2e_jobs", *args],
            cwd=self.root, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, text=True,
        )  # fmt: skip
        handle.close()
        return Worker(popen, log)

    def work(self, *args: str, timeout_s: float = 90) -> tuple[int, str]:
        """Run ``queue:work`` to its end; returns (exit code, output)."""
        worker = self.start_work(*args)
        try:
            code = worker.popen.wait(timeout=timeout_s)
        finally:
            worker.kill()
        return code, worker.output()

    # -- what happened ----------------------------------------------------
    def ledger(self) -> Counter[str]:
        path = self.root / "ledger.txt"
        if not path.exists():
            return Counter()
        return Counter(line.split()[0] for line in path.read_text().splitlines() if line)

    def ledger_pids(self) -> dict[str, int]:
        path = self.root / "ledger.txt"
        pairs = [line.split() for line in path.read_text().splitlines() if line]
        return {job_id: int(pid) for job_id, pid in pairs}

    def failed(self) -> list[dict[str, Any]]:
        proc = self.kashq("queue:failed", "--json")
        assert proc.returncode == 0, proc.stderr
        rows: list[dict[str, Any]] = json.loads(proc.stdout)
        return rows

    def started(self) -> Counter[str]:
        """How many times each job started (the jobs that call ``started()``)."""
        path = self.root / "started.txt"
        if not path.exists():
            return Counter()
        return Counter(line for line in path.read_text().splitlines() if line)

    def wait_for_ledger(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(self.ledger().values()) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"only {sum(self.ledger().values())} of {count} jobs ran in time")
            time.sleep(0.05)


@dataclass
class Worker:
    """A running ``queue:work``."""

    popen: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines of a ``--json`` run."""
        return json_events(self.output())

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL everything: the supervisor's process group and each worker's (its own)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGSTOP)  # starts no worker while we look
        for pid in self.children():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def children(self) -> list[int]:
        """The supervisor's child processes (worker processes, and a scheduler)."""
        pid = self.popen.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(part) for part in text.split()]

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.kill_group()

    def wait_for(self, text: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{text!r} never appeared; output:\n{self.output()}")
            time.sleep(0.05)


def json_events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KASHQ_")}
    env.update(NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


@contextmanager
def make_app(tmp_path: Path, connection: str) -> Iterator[App]:
    """An app directory with the jobs module, on the SQLite default or on Redis."""
    (tmp_path / "e2e_jobs.py").write_text(JOBS_MODULE)
    env = clean_env()
    prefix = None
    if connection == "redis":
        shared_client()  # skip locally / fail in CI when Redis is down
        prefix = f"kashq-e2e-{uuid.uuid4().hex[:10]}"
        env.update(KASHQ_CONNECTION="redis", KASHQ_REDIS_URL=REDIS_URL, KASHQ_PREFIX=prefix)
    try:
        yield App(tmp_path, env)
    finally:
        if prefix is not None:
            delete_prefix(shared_client(), prefix)
