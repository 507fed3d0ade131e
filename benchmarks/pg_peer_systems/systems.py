"""How each system is installed, given its schema and started: venvs, commands, configuration.

kashq runs from the repository's ``.venv``. Every peer has a venv of its own
under ``~/.cache/kashq-bench/<name>`` (``KASHQ_BENCH_VENVS`` moves it), made by
``pg_peers.py --setup`` from kashq's Python (3.11), or 3.12 for oban-py
(``KASHQ_BENCH_PYTHON312``, default pyenv's 3.12.1), with pinned versions, so
no peer's dependencies meet another's (PgQueuer 1.6.0 needs typer 0.20.1).

Each system names its schema commands (run on a fresh database), and the
command lines of its workers for 1 and for 2 processes. Every worker logs at
WARNING or says nothing per job (kashq ``--quiet``), so no system pays for
lines the others do not write. The peers' settings are their best for 1 and 2
processes on a 2-core machine, found by draining 5,000 jobs with each of:
Procrastinate ``--concurrency`` 1, 4, 10, 25 (10: no gain beyond; it fetches
one job per query); PgQueuer ``--batch-size`` 10 (its default), 25, 50, 100,
200, 500 (100: the plateau starts there); Chancy's queue concurrency 5, 20,
50, 100, 200, 500 (100, its AsyncExecutor's default: the plateau); oban
``--queues bench:`` 10, 20, 50, 100 (100). kashq keeps its defaults.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

BENCHMARKS = Path(__file__).resolve().parent.parent
REPO = BENCHMARKS.parent
VENVS = Path(os.environ.get("KASHQ_BENCH_VENVS", Path.home() / ".cache" / "kashq-bench"))
PYTHON311 = str(Path(sys.base_prefix) / "bin" / "python3")  # the Python of kashq's venv
PYTHON312 = os.environ.get("KASHQ_BENCH_PYTHON312", "/root/.pyenv/versions/3.12.1/bin/python3.12")


class System:
    """A queue system under test; subclasses fill in the class variables and commands."""

    name: ClassVar[str]
    config: ClassVar[str]
    bulk_label: ClassVar[str]
    requirements: ClassVar[tuple[str, ...]] = ()
    base_python: ClassVar[str] = PYTHON311
    setting: ClassVar[int] = 0  # handed to ``client prepare``

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    def bin(self, program: str) -> str:
        return str(self.venv / "bin" / program)

    def client_command(self, action: str, count: int) -> list[str]:
        """The command line of one client measurement (``pg_peer_systems.client``)."""
        module = ["-m", "pg_peer_systems.client", self.name, action, str(count)]
        return [self.bin("python"), *module]

    def env(self, url: str) -> dict[str, str]:
        """The environment of every process of this system, run from ``benchmarks/``."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("KASHQ_", "PG"))}
        return {**inherited, "BENCH_PG_URL": url, "PYTHONPATH": str(BENCHMARKS)}

    def schema_commands(self, url: str) -> list[list[str]]:
        raise NotImplementedError

    def worker_command(self, url: str) -> list[str]:
        """One worker process; ``worker_commands`` starts it once per process."""
        raise NotImplementedError

    def worker_commands(self, url: str, procs: int) -> list[list[str]]:
        return [self.worker_command(url) for _ in range(procs)]

    def setup(self) -> None:
        """Creates or updates this system's venv (raises with pip's last line on failure)."""
        if not (self.venv / "bin" / "python").exists():
            _run([self.base_python, "-m", "venv", str(self.venv)])
        _run([self.bin("python"), "-m", "pip", "install", "-q", *self.requirements])

    def check(self) -> None:
        """Raises unless this system's venv is there (``--setup`` makes it)."""
        if not (self.venv / "bin" / "python").exists():
            raise RuntimeError(f"no venv at {self.venv}: run pg_peers.py --setup")


class Kashq(System):
    name = "kashq"
    config = "`kashq queue:work --workers 1|2 --quiet`, its defaults (prefetch 64, events on)"
    bulk_label = "kashq.dispatch_many"

    @property
    def venv(self) -> Path:
        return REPO / ".venv"

    def env(self, url: str) -> dict[str, str]:
        return {**super().env(url), "KASHQ_CONNECTION": "database", "KASHQ_DATABASE_URL": url}

    def schema_commands(self, url: str) -> list[list[str]]:
        return [[self.bin("kashq"), "migrate", "--database-url", url]]

    def worker_commands(self, url: str, procs: int) -> list[list[str]]:
        work = [self.bin("kashq"), "queue:work", "--connection", "database", "--quiet"]
        return [[*work, "--workers", str(procs), "--import", "pg_peer_systems.run_kashq"]]

    def setup(self) -> None:
        self.check()


class Procrastinate(System):
    name = "procrastinate"
    concurrency = 10
    config = (
        f"1|2 x `procrastinate worker --concurrency {concurrency} --log-level warning`, "
        "async tasks, psycopg"
    )
    bulk_label = "batch_defer_async"
    requirements = ("procrastinate==3.10.0", "psycopg[binary]")

    def schema_commands(self, url: str) -> list[list[str]]:
        return [[self.bin("procrastinate"), *self._app(), "schema", "--apply"]]

    def worker_command(self, url: str) -> list[str]:
        args = ["worker", "--queues", "bench", "--concurrency", str(self.concurrency)]
        return [self.bin("procrastinate"), *self._app(), "--log-level", "warning", *args]

    @staticmethod
    def _app() -> list[str]:
        return ["--app", "pg_peer_systems.run_procrastinate.app"]


class PgQueuer(System):
    name = "pgqueuer"
    batch_size = 100
    config = (
        f"1|2 x `pgq run --batch-size {batch_size} --log-level WARNING`, async entrypoints, "
        "one asyncpg connection"
    )
    bulk_label = "enqueue(lists)"
    requirements = ("pgqueuer[asyncpg]==1.6.0", "typer==0.20.1")

    def schema_commands(self, url: str) -> list[list[str]]:
        return [[self.bin("pgq"), "--pg-dsn", url, "install"]]

    def worker_command(self, url: str) -> list[str]:
        run = ["run", "pg_peer_systems.run_pgqueuer:factory", "--batch-size", str(self.batch_size)]
        return [self.bin("pgq"), "--pg-dsn", url, *run, "--log-level", "WARNING"]


class Chancy(System):
    name = "chancy"
    setting = 100  # the queue's concurrency per worker
    config = (
        f"1|2 x `chancy worker start`, queue on the AsyncExecutor, concurrency {setting}, "
        "eager polling, logger at WARNING, default plugins"
    )
    bulk_label = "push_many"
    requirements = ("chancy[cli]==0.26.0", "psycopg[binary]")

    def schema_commands(self, url: str) -> list[list[str]]:
        migrate = [self.bin("chancy"), "--app", "pg_peer_systems.run_chancy.app", "misc", "migrate"]
        return [migrate, self.client_command("prepare", self.setting)]

    def worker_command(self, url: str) -> list[str]:
        return [self.bin("chancy"), "--app", "pg_peer_systems.run_chancy.app", "worker", "start"]


class Oban(System):
    name = "oban"
    limit = 100
    config = (
        f"1|2 x `oban start --queues bench:{limit} --log-level warning`, async workers, Python 3.12"
    )
    bulk_label = "enqueue_many"
    requirements = ("oban==0.7.0", "psycopg[binary]")
    base_python = PYTHON312

    def schema_commands(self, url: str) -> list[list[str]]:
        return [[self.bin("oban"), "install", "--dsn", url]]

    def worker_command(self, url: str) -> list[str]:
        queues = ["--queues", f"bench:{self.limit}", "--log-level", "warning"]
        return [self.bin("oban"), "start", "--dsn", url, *queues, *self._modules()]

    @staticmethod
    def _modules() -> list[str]:
        # Named, so oban does not grep the working directory for cron workers.
        return ["--cron-modules", "pg_peer_systems.run_oban"]


SYSTEMS: list[type[System]] = [Kashq, Procrastinate, PgQueuer, Chancy, Oban]


def last_line(output: str) -> str:
    """The last line of ``output`` that says something (not a frame of box-drawing characters)."""
    for line in reversed(output.splitlines()):
        text = line.strip(" \t│┃╭╮╰╯─━")
        if any(char.isalnum() for char in text):
            return text
    return ""


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = last_line(done.stderr) or last_line(done.stdout)
        raise RuntimeError(f"{Path(command[0]).name} exited {done.returncode}: {said}")
