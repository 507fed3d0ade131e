"""Real servers for tests: the machine's Redis/PostgreSQL/MariaDB, private redis-servers and
a private PostgreSQL (for tests that restart one).

A test that needs a server it cannot reach is skipped locally with the reason,
and fails in CI (``CI=true``), where a missing server is a broken setup.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("KASHQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "KASHQ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("KASHQ_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, why: str) -> None:
    """Skip (locally) or fail (in CI) the current test because ``what`` is missing."""
    message = f"{what} is not available: {why}"
    if in_ci():
        pytest.fail(message + " (CI requires it)", pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis wants it <= 55535."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """A private ``redis-server`` on a free port, which a test may kill and restart."""

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = False,
        cluster: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server", "not on PATH")
        self.binary = str(binary)
        self.port = free_cluster_port() if cluster else free_port()
        self.workdir = workdir / f"redis-{self.port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.cluster = cluster
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += self.extra_args
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, 0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save): what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its port and accepts connections, but never
        answers (a hung host). :meth:`resume` it before stopping it."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server: it goes on with what it had received."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


class RedisClusterNodes:
    """A local Redis Cluster of three masters (no replicas) built from private servers."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(workdir, cluster=True, appendonly=True) for _ in range(3)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisClusterNodes:
        try:
            self._create()
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise
        return self

    def _create(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            unavailable("redis-cli", "not on PATH")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [str(cli), "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
        )  # fmt: skip
        self.wait_ok()

    def wait_ok(self, timeout_s: float = 20) -> None:
        """Wait until every node reports ``cluster_state:ok``."""
        cli = str(shutil.which("redis-cli"))
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            while True:
                info = subprocess.run(
                    [cli, "-p", str(node.port), "cluster", "info"],
                    capture_output=True, text=True, timeout=5, check=False,
                )  # fmt: skip
                if "cluster_state:ok" in info.stdout:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node {node.port} not ok: {info.stdout[:200]}")
                time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class PostgresServer:
    """A private PostgreSQL (initdb + pg_ctl) on a free port, which a test may restart.

    Trust authentication, user ``postgres``, listening on 127.0.0.1 only. The
    server refuses to run as root, so when the tests do (as here and in CI)
    every command runs as the ``postgres`` user (``runuser``), and the data
    and socket directories live in a fresh directory it owns (pytest's own
    temporary directories are private to root). ``fsync`` is off: the faults
    kill processes, not the machine, so the page cache keeps what was written.
    """

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        binary = shutil.which("pg_ctl")
        bindir = found[-1].parent if found else (Path(binary).parent if binary else None)
        if bindir is None or not (bindir / "initdb").exists():
            unavailable("PostgreSQL server binaries", "no initdb/pg_ctl under /usr/lib/postgresql")
        self.bindir = bindir
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                unavailable("runuser", "needed to run PostgreSQL as the postgres user")
            self.as_postgres = [str(runuser), "-u", "postgres", "--"]
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"kashq-pg-{self.port}-"))
        self.data = self.workdir / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def _log(self) -> str:
        return str(self.workdir / "server.log")

    def start(self) -> PostgresServer:
        if not self.data.exists():
            if self.as_postgres:
                shutil.chown(self.workdir, "postgres", "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "--no-sync", "--no-instructions")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=100"
        )
        # The log file also keeps the server off our pipes (else the run never ends).
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", self._log,
                  "-w", "-t", "30", "start")  # fmt: skip
        return self

    def restart(self) -> None:
        """Stop at once, as a crash would (no checkpoint; recovery replays the WAL), and start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-l", self._log,
                  "-w", "-t", "30", "restart")  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        proc = subprocess.run(
            [*self.as_postgres, str(self.bindir / tool), *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
