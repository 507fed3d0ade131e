"""How each figure of ``benchmarks/pg_peers.py`` is measured, the same way for every system.

Every measurement gets a fresh database (``CREATE DATABASE``, the system's schema
commands, and ``DROP DATABASE ... WITH (FORCE)`` after), on a server left as it
is (autovacuum off there; no ``ANALYZE`` after a queue is filled, as a queue
filled in one go has no fresh statistics either). Enqueueing runs in a
subprocess of the system's venv (``client.py``), timed inside it; progress of a
drain comes from the jobs themselves (``probe.done()`` counts into a
per-process file), so polling adds no query.

- enqueue: N jobs, one call each (``client enqueue N``); rate = N / seconds.
- bulk, then drain with 1 process: on one fresh database, N jobs with the bulk
  API (``client bulk N``: rate = N / seconds), then the system's worker
  command(s) started; progress polled every 5 ms until all N are done. The
  window runs from the first poll that sees >= 10% of N done to the first
  that sees >= 90% (start-up and the tail left out); rate = jobs done in the
  window / its seconds.
- drain with 2 processes: the same on another fresh database (the bulk call
  that fills it is not counted).
- idle latency, once per system on its own fresh database: one idle worker
  (the 1-process command), then ``client latency SAMPLES`` (see ``client.py``).

Each figure is the median of its runs; a figure that fails keeps its error and
is not tried again for that system.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peer_systems.harness
import psycopg
from common import p50_p99_ms

from pg_peer_systems import probe
from pg_peer_systems.systems import BENCHMARKS, System, last_line

FIGURES = ("enqueue", "bulk", "drain1", "drain2")


@dataclass
class Row:
    """One system's runs of each figure (jobs/s), latency, and what failed."""

    name: str
    config: str
    bulk_label: str
    runs: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f in FIGURES})
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: dict[str, str] = field(default_factory=dict)  # by figure (or "setup", "latency")

    def median(self, figure: str) -> float | None:
        runs = self.runs[figure]
        return statistics.median(runs) if runs else None


class Bench:
    """Measures the systems against the PostgreSQL server that ``admin_url`` reaches."""

    def __init__(self, admin_url: str, n: int, samples: int) -> None:
        self.admin_url, self.n, self.samples = admin_url, n, samples
        self.probe_dir = Path(tempfile.mkdtemp(prefix="bench-pg-probe-"))
        self.timeout_s = 60 + self.n / 20  # 20 jobs/s at the least

    def one_run(self, system: System, row: Row) -> None:
        """Enqueue; bulk then drain with 1 process; fill then drain with 2 processes."""
        for figure, measure in (
            ("enqueue", self._enqueue), ("bulk", self._bulk_then_drain1), ("drain2", self._drain2),
        ):  # fmt: skip
            if figure in row.errors or (figure == "drain2" and "bulk" in row.errors):
                continue
            try:
                measure(system, row)
            except Exception as exc:
                row.errors[figure] = f"{type(exc).__name__}: {exc}"

    def latency(self, system: System, row: Row) -> None:
        """One idle worker; ``samples`` stamped jobs sent one at a time (see ``client.py``)."""
        try:
            with self.database(system) as url:
                latency_file = self.probe_dir / "latency"
                latency_file.unlink(missing_ok=True)
                env = {**system.env(url), "BENCH_LATENCY_FILE": str(latency_file)}
                running = Workers(system.worker_commands(url, 1), self._env(env))
                try:
                    result = self.client(system, env, "latency", self.samples, running)
                finally:
                    running.stop()
            row.p50_ms, row.p99_ms = p50_p99_ms(result["latencies_s"])
        except Exception as exc:
            row.errors["latency"] = f"{type(exc).__name__}: {exc}"

    def _enqueue(self, system: System, row: Row) -> None:
        with self.database(system) as url:
            row.runs["enqueue"].append(self.n / self.seconds(system, url, "enqueue"))

    def _bulk_then_drain1(self, system: System, row: Row) -> None:
        with self.database(system) as url:
            row.runs["bulk"].append(self.n / self.seconds(system, url, "bulk"))
            if "drain1" in row.errors:
                return
            try:
                row.runs["drain1"].append(self.drain(system, url, 1))
            except Exception as exc:
                row.errors["drain1"] = f"{type(exc).__name__}: {exc}"

    def _drain2(self, system: System, row: Row) -> None:
        with self.database(system) as url:
            self.seconds(system, url, "bulk")
            row.runs["drain2"].append(self.drain(system, url, 2))

    @contextmanager
    def database(self, system: System) -> Iterator[str]:
        """A new database with ``system``'s schema; dropped (connections and all) after."""
        name = f"kashq_bench_{system.name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = on_database(self.admin_url, name)
        try:
            env = system.env(url)
            for command in system.schema_commands(url):
                _check(subprocess.run(command, check=False, cwd=BENCHMARKS, env=env, **_OUT))
            yield url
        finally:
            with psycopg.connect(self.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def seconds(self, system: System, url: str, action: str) -> float:
        """The seconds ``client ACTION N`` took to send N jobs to ``url``."""
        return float(self.client(system, system.env(url), action)["seconds"])

    def client(
        self, system: System, env: dict[str, str], action: str, count: int = 0,
        running: Workers | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Runs one client measurement (``count`` defaults to N); the JSON it printed."""
        command = system.client_command(action, count or self.n)
        try:
            done = subprocess.run(
                command, check=False, cwd=BENCHMARKS, env=env, timeout=self.timeout_s, **_OUT
            )
            _check(done)
        except Exception:
            if running is not None:
                running.check()  # a worker that died says why first
            raise
        return json.loads(done.stdout.strip().splitlines()[-1])

    def drain(self, system: System, url: str, procs: int) -> float:
        """``procs`` worker processes on the N queued jobs: jobs/s from 10% to 90% done."""
        n = self.n
        shutil.rmtree(self.probe_dir, ignore_errors=True)
        self.probe_dir.mkdir()
        running = Workers(system.worker_commands(url, procs), self._env(system.env(url)))
        low: tuple[float, int] | None = None
        high: tuple[float, int] | None = None
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                done = probe.total(self.probe_dir)
                at_s = time.perf_counter()
                if low is None and done >= 0.1 * n:
                    low = (at_s, done)
                if high is None and done >= 0.9 * n:
                    high = (at_s, done)
                if done >= n:
                    break
                running.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{done:,} of {n:,} jobs done before the deadline")
                time.sleep(0.005)
        finally:
            running.stop()
        assert low is not None and high is not None
        if high[1] <= low[1]:
            raise RuntimeError("10% to 90% done between two polls: too few jobs to measure")
        return (high[1] - low[1]) / (high[0] - low[0])

    def close(self) -> None:
        shutil.rmtree(self.probe_dir, ignore_errors=True)

    def _env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "BENCH_PROBE_DIR": str(self.probe_dir)}


def raw_limits(admin_url: str, n: int) -> tuple[float, float]:
    """PostgreSQL's own limits from Python, on a fresh database: ``SELECT 1`` round trips/s
    and single-row ``INSERT`` + ``COMMIT``/s (one psycopg connection, medians of 3 runs of
    N after a warm-up of 200)."""
    name = f"kashq_bench_raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(on_database(admin_url, name)) as conn:
            conn.execute("CREATE TABLE raw_jobs (id bigserial PRIMARY KEY, payload jsonb)")
            conn.commit()

            def selects(count: int) -> float:
                started = time.perf_counter()
                for _ in range(count):
                    conn.execute("SELECT 1").fetchone()
                return count / (time.perf_counter() - started)

            def inserts(count: int) -> float:
                started = time.perf_counter()
                for _ in range(count):
                    conn.execute("INSERT INTO raw_jobs (payload) VALUES (%s)", ("{}",))
                    conn.commit()
                return count / (time.perf_counter() - started)

            conn.autocommit = True  # SELECT 1 alone: no transaction around it
            selects(200)
            select_rate = statistics.median(selects(n) for _ in range(3))
            conn.autocommit = False
            inserts(200)
            insert_rate = statistics.median(inserts(n) for _ in range(3))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return select_rate, insert_rate


def on_database(url: str, name: str) -> str:
    """``url`` (``postgresql://user@host:port/db?...``) with database ``name`` instead."""
    return urllib.parse.urlsplit(url)._replace(path=f"/{name}").geturl()


_OUT = {"capture_output": True, "text": True}


def _check(done: subprocess.CompletedProcess[str]) -> None:
    """Raises with the last line the command printed if it failed."""
    if done.returncode != 0:
        said = last_line(done.stderr) or last_line(done.stdout)
        raise RuntimeError(f"{Path(done.args[0]).name} exited {done.returncode}: {said}")


class Workers(peer_systems.harness.Workers):
    """``benchmarks/peers.py``'s worker processes (own sessions, output kept in a log file)."""

    def check(self) -> None:
        """Raises with the last line a worker printed if one has exited."""
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                said = last_line(Path(log).read_text(errors="replace"))
                raise RuntimeError(f"worker exited ({proc.returncode}): {said}")
