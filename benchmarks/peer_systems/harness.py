"""How each figure of ``benchmarks/peers.py`` is measured, the same way for every system.

Progress comes from the jobs themselves (``probe.done()`` counts into a
per-process file), never from Redis, so polling adds no Redis command.

- enqueue and bulk: the parent's wall clock, CPU (``time.process_time()``, all
  its threads) and the Redis server's CPU (``INFO cpu``) read just before and
  just after one call that builds and sends N jobs; rate = N / wall, client and
  Redis CPU µs/job = CPU difference / N. The CPU readings after also wait for
  what the call left to a background thread (``Peer.settle()``: kashq's event
  recorder writes "dispatched" events every 50 ms); the wall clock does not.
- drain: N jobs queued, the workers started, progress polled every 5 ms until
  all N are done. The window runs from the first poll that sees ≥ 10% of N
  done to the first that sees ≥ 90% (start-up and the tail left out, as
  ``benchmarks/workers.py`` does); at each end the poll reads the clock, then
  the CPU of every process the worker commands started (``cpu.tree_cpu_s``:
  sessions and descendants, from ``/proc``), then ``INFO cpu``. Rate = jobs done
  in the window / its seconds; workers' and Redis CPU µs/job = CPU difference /
  jobs done in the window. The parent's own CPU (polling) is in neither.
  ``/proc`` counts in clock ticks (10 ms), so a window of a fraction of a
  second (``--quick``: 1,600 jobs) gives worker CPU to ±10 ms per process;
  N = 20,000 (windows of seconds) makes that a few percent at most. Redis's
  ``INFO cpu`` counts in microseconds.

Each figure is the median, separately for each of its three numbers, of the
runs. The realistic job's counter is checked after each drain: every job ran
its ``INCR``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import workers
from common import p50_p99_ms

from peer_systems import probe
from peer_systems.adapters import Peer
from peer_systems.cpu import Snapshot, machine_ticks, redis_cpu_s, tree_cpu_s

HERE = Path(__file__).resolve().parent.parent
JOBS = ("noop", "incr")

Sample = tuple[float, float, float]  # jobs/s, client (or workers') CPU µs/job, Redis CPU µs/job


@dataclass
class Figure:
    """One figure's runs, each a ``Sample``; medians are taken number by number."""

    runs: list[Sample] = field(default_factory=list)

    def median(self, index: int) -> float | None:
        return statistics.median(run[index] for run in self.runs) if self.runs else None

    @property
    def rate(self) -> float | None:
        return self.median(0)

    @property
    def client_us(self) -> float | None:
        return self.median(1)

    @property
    def redis_us(self) -> float | None:
        return self.median(2)


@dataclass
class Result:
    """One system's figures on one job variant."""

    job: str
    enqueue: Figure = field(default_factory=Figure)
    bulk: Figure = field(default_factory=Figure)
    drain1: Figure = field(default_factory=Figure)
    drain2: Figure = field(default_factory=Figure)
    cmds_per_job: float | None = None
    top_cmds: str = ""


@dataclass
class Row:
    """One system's figures, by job variant; None where not measured (see ``errors``)."""

    name: str
    config: str
    bulk_label: str | None
    results: dict[str, Result] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    processes: dict[int, int] = field(default_factory=dict)  # by worker processes asked for
    errors: list[str] = field(default_factory=list)


class Workers:
    """Worker processes of one system, each in its own session, stderr kept in a log file."""

    def __init__(self, commands: list[list[str]], env: dict[str, str]) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[str] = []
        for cmd in commands:
            fd, log = tempfile.mkstemp(prefix="bench-worker-", suffix=".log")
            out = {"stdout": fd, "stderr": subprocess.STDOUT}
            proc = subprocess.Popen(cmd, cwd=HERE, env=env, start_new_session=True, **out)
            self.procs.append(proc)
            os.close(fd)
            self.logs.append(log)

    def check(self) -> None:
        """Raises with the last line a worker printed if one has exited."""
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                lines = Path(log).read_text(errors="replace").strip().splitlines()
                raise RuntimeError(f"worker exited ({proc.returncode}): {lines[-1:]}")

    def stop(self) -> None:
        for proc in self.procs:
            workers.stop(proc, grace_s=15)
        for log in self.logs:
            Path(log).unlink(missing_ok=True)


class Bench:
    """Measures one system at a time on its own Redis database of the private server."""

    def __init__(self, url: str, n: int, runs: int, samples: int) -> None:
        self.url, self.n, self.runs, self.samples = url, n, runs, samples
        self.probe_dir = Path(tempfile.mkdtemp(prefix="bench-probe-"))
        self.cores_busy = 0.0  # of the last drain's window: the share of the machine busy

    def env(self, url: str) -> dict[str, str]:
        return {
            **os.environ, "BENCH_REDIS_URL": url, "BENCH_PROBE_DIR": str(self.probe_dir),
            "BENCH_LATENCY_KEY": "bench-latency", "PYTHONPATH": str(HERE),
        }  # fmt: skip

    def measure(self, peer_class: type[Peer], db: int, jobs: list[str]) -> Row:
        """Every run measures each job variant in turn, so they share the machine's moods."""
        row = Row(peer_class.name, peer_class.config, peer_class.bulk_label)
        row.results = {job: Result(job) for job in jobs}
        url = self.url.rsplit("/", 1)[0] + f"/{db}"
        admin = redis.Redis.from_url(url)
        admin.flushdb()
        os.environ["BENCH_REDIS_URL"] = url  # the app modules read it on import
        try:
            peer = peer_class(url, self.env(url))
        except Exception as exc:
            row.errors.append(f"setup: {type(exc).__name__}: {exc}")
            return row
        failed: set[str] = set()
        try:
            for run in range(self.runs):
                for job in [job for job in jobs if job not in failed]:
                    try:
                        self._one_run(peer, row, admin, row.results[job], first=run == 0)
                    except Exception as exc:
                        row.errors.append(f"{job} run {run + 1}: {type(exc).__name__}: {exc}")
                        failed.add(job)
                    finally:
                        admin.flushdb()
            try:
                row.p50_ms, row.p99_ms = self.latency(peer, admin)
            except Exception as exc:
                row.errors.append(f"latency: {type(exc).__name__}: {exc}")
        finally:
            peer.close()
            admin.flushdb()
        return row

    def _one_run(
        self, peer: Peer, row: Row, admin: redis.Redis, result: Result, *, first: bool
    ) -> None:
        """Enqueue → drain with 1 process (Redis commands counted on the first run),
        then bulk enqueue (or enqueue again) → drain with 2 processes."""
        n, job = self.n, result.job
        if first:
            admin.config_resetstat()
        result.enqueue.runs.append(_timed(n, admin, lambda: peer.enqueue(job, n), peer))
        result.drain1.runs.append(self.drain(peer, admin, row, 1))
        if first:
            result.cmds_per_job, result.top_cmds = _commands_per_job(admin, n)
        _check_work(admin, job, n)
        admin.flushdb()
        if row.bulk_label is None:
            result.enqueue.runs.append(_timed(n, admin, lambda: peer.enqueue(job, n), peer))
        else:
            result.bulk.runs.append(_timed(n, admin, lambda: peer.bulk(job, n), peer))
        result.drain2.runs.append(self.drain(peer, admin, row, 2))
        _check_work(admin, job, n)

    def drain(self, peer: Peer, admin: redis.Redis, row: Row, procs: int) -> Sample:
        """``procs`` worker processes on the N queued jobs: rate and CPU, 10% → 90% done."""
        n = self.n
        self.reset_probe()
        running = Workers(peer.worker_commands(procs), peer.env)
        roots = {proc.pid for proc in running.procs}
        low: Snapshot | None = None
        high: Snapshot | None = None
        deadline = time.monotonic() + 60 + n / 100
        try:
            while True:
                done = sum(probe.total(self.probe_dir).values())
                at_s = time.perf_counter()
                if low is None and done >= 0.1 * n:
                    low, row.processes[procs] = _snapshot(at_s, done, roots, admin)
                if high is None and done >= 0.9 * n:
                    high, _ = _snapshot(at_s, done, roots, admin)
                if done >= n:
                    break
                running.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{done:,} of {n:,} jobs done before the deadline")
                time.sleep(0.005)
        finally:
            running.stop()
        assert low is not None and high is not None
        jobs = high.done - low.done
        if jobs <= 0:
            raise RuntimeError("10% to 90% done between two polls: too few jobs to measure")
        self.cores_busy = high.cores_busy_since(low)
        return (
            jobs / (high.at_s - low.at_s),
            (high.workers_s - low.workers_s) / jobs * 1e6,
            (high.redis_s - low.redis_s) / jobs * 1e6,
        )

    def latency(self, peer: Peer, admin: redis.Redis) -> tuple[float, float]:
        """dispatch → handler starts, one idle worker process, ``samples`` times."""
        key = peer.env["BENCH_LATENCY_KEY"]
        running = Workers(peer.latency_commands(), peer.env)
        try:
            peer.send_stamp(time.time())  # warm-up: waits for the worker to be ready
            for _ in range(60):
                if admin.blpop([key], 1) is not None:
                    break
                running.check()
            else:
                raise TimeoutError("no worker ran the job within 60 s")
            latencies = []
            for _ in range(self.samples):
                time.sleep(0.02)  # the worker is idle, waiting for a job
                peer.send_stamp(time.time())
                popped = admin.blpop([key], 10)
                if popped is None:
                    raise TimeoutError("the worker did not run a job within 10 s")
                latencies.append(float(popped[1]))
        finally:
            running.stop()
        return p50_p99_ms(latencies)

    def reset_probe(self) -> None:
        shutil.rmtree(self.probe_dir, ignore_errors=True)
        self.probe_dir.mkdir()

    def worker_rss(self, peer: Peer, jobs: int) -> tuple[float, float, int]:
        """RSS in MB of a ``--workers=1`` process after 1,000 and after ``jobs`` jobs,
        and how many worker processes ran them (>1 if one was recycled)."""
        chunk = 10_000
        for start in range(0, jobs, chunk):
            peer.bulk("noop", min(chunk, jobs - start))
        self.reset_probe()
        running = Workers(peer.worker_commands(1), peer.env)
        early = late = 0.0
        try:
            deadline = time.monotonic() + 60 + jobs / 100
            while not late:
                counts = probe.total(self.probe_dir)
                done = sum(counts.values())
                alive = [pid for pid in counts if Path(f"/proc/{pid}").exists()]
                if not early and done >= 1000:
                    early = _rss_mb(alive[0])
                if done >= jobs:
                    late = _rss_mb(alive[0])
                running.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{done:,} of {jobs:,} jobs done before the deadline")
                time.sleep(0.01)
        finally:
            running.stop()
        return early, late, len(counts)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _commands_per_job(admin: redis.Redis, n: int) -> tuple[float, str]:
    """Redis commands since CONFIG RESETSTAT per job, and the five most called."""
    stats: dict[str, Any] = admin.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in stats.items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }
    top = sorted(calls.items(), key=lambda item: -item[1])[:5]
    return sum(calls.values()) / n, ", ".join(f"{c} {k / n:.2f}" for c, k in top)


def _timed(n: int, admin: redis.Redis, send: Callable[[], object], peer: Peer) -> Sample:
    """``send`` sends n jobs: jobs/s, this process's CPU µs/job, Redis CPU µs/job.

    The CPU figures also count ``peer.settle()``, the work the sending left to a
    background thread; the rate, what the caller waits for, does not."""
    redis_s, cpu_s, started = redis_cpu_s(admin), time.process_time(), time.perf_counter()
    send()
    wall_s = time.perf_counter() - started
    peer.settle()
    cpu_s = time.process_time() - cpu_s
    redis_s = redis_cpu_s(admin) - redis_s
    return n / wall_s, cpu_s / n * 1e6, redis_s / n * 1e6


def _snapshot(at_s: float, done: int, roots: set[int], admin: redis.Redis) -> tuple[Snapshot, int]:
    """A drain sample at ``at_s``, and how many worker processes there are."""
    workers_s, processes = tree_cpu_s(roots)
    return Snapshot(at_s, done, workers_s, redis_cpu_s(admin), machine_ticks()), processes


def _check_work(admin: redis.Redis, job: str, n: int) -> None:
    """Raises unless every realistic job ran its ``INCR``."""
    if job == "incr" and int(admin.get(probe.INCR_KEY) or 0) < n:
        raise RuntimeError(f"{probe.INCR_KEY} is {admin.get(probe.INCR_KEY)!r}, not {n}")
