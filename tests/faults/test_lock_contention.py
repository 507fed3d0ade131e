"""Eight processes fight for one lock; the log they write while holding it never overlaps.

Each process takes the lock ``ITERATIONS`` times and, while holding it, appends
``enter <pid> <ns>`` and ``exit <pid> <ns>`` to one shared file (O_APPEND, so
lines land whole and in the order written). Mutual exclusion means the file
is a strict alternation of enter/exit pairs of one pid each, in time order.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.databases import database
from tests.support.processes import run_together, start_python
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL

PROCESSES = 8
ITERATIONS = 30

CONTENDER = """
    import os, sys, time
    from kashq.locks import DatabaseLocks, DistributedLock

    kind, url, prefix, log = sys.argv[1:5]
    iterations = int(sys.argv[5])
    if kind == "redis":
        locks = DistributedLock(url, prefix=prefix)
    else:
        locks = DatabaseLocks(url)
    locks.hit("warm-up", 60)  # connect (and check the schema) before the race starts
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    print("ready", flush=True)
    sys.stdin.readline()
    pid = os.getpid()
    for _ in range(iterations):
        with locks.acquire("contended", ttl_s=30, wait_s=120):
            os.write(fd, f"enter {pid} {time.time_ns()}\\n".encode())
            time.sleep(0.002)  # a short critical section, long enough to be overlapped
            os.write(fd, f"exit {pid} {time.time_ns()}\\n".encode())
    os.close(fd)
    locks.close()
"""


@contextmanager
def redis_target(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    client = shared_client()
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    try:
        yield "redis", REDIS_URL, prefix
    finally:
        delete_prefix(client, prefix)
        client.close()


@contextmanager
def database_target(kind: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    with database(kind, tmp_path, migrated=True) as url:
        yield "database", url, ""


@pytest.fixture(params=["redis", "postgres", "sqlite", "mariadb"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    if request.param == "redis":
        with redis_target(tmp_path) as found:
            yield found
    else:
        with database_target(request.param, tmp_path) as found:
            yield found


def test_contending_processes_never_hold_the_lock_together(
    target: tuple[str, str, str], tmp_path: Path
) -> None:
    kind, url, prefix = target
    log = tmp_path / "holders.log"
    procs = [
        start_python(CONTENDER, kind, url, prefix, str(log), str(ITERATIONS))
        for _ in range(PROCESSES)
    ]
    run_together(procs)

    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) == 2 * PROCESSES * ITERATIONS
    last_exit_ns = 0
    for enter, exit_ in zip(lines[::2], lines[1::2], strict=True):
        assert enter[0] == "enter" and exit_[0] == "exit", (enter, exit_)
        assert enter[1] == exit_[1], f"{exit_[1]} exited while {enter[1]} held the lock"
        assert last_exit_ns <= int(enter[2]) <= int(exit_[2])
        last_exit_ns = int(exit_[2])
    turns = Counter(enter[1] for enter in lines[::2])
    assert sorted(turns.values()) == [ITERATIONS] * PROCESSES
    assert {str(proc.pid) for proc in procs} == set(turns)
