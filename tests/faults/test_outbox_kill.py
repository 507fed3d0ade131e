"""The Redis outbox under SIGKILL: each committed row becomes exactly one job.

A dispatching process killed right after its commit (before any relay ran),
and a relay killed after pushing a job and before deleting its row, on an
outbox in SQLite, PostgreSQL and MariaDB. And ``queue:work`` relays by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kashq.drivers.base import QueueSizes
from kashq.drivers.redis import RedisDriver
from tests.support.databases import KINDS, database
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL
from tests.support.waiting import eventually

JOBS = """
from pathlib import Path
from kashq import Job

class Ship(Job):
    order: int
    marks: str

    def handle(self) -> None:
        with open(Path(self.marks) / str(self.order), "x"):  # a second run fails
            pass
"""


@pytest.fixture(params=KINDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    (tmp_path / "outbox_jobs.py").write_text(JOBS)
    (tmp_path / "marks").mkdir()
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    with database(request.param, tmp_path, migrated=True) as url:
        yield {
            **os.environ,
            "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}",
            "KASHQ_CONNECTION": "redis",
            "KASHQ_REDIS_URL": REDIS_URL,
            "KASHQ_PREFIX": prefix,
            "KASHQ_DATABASE_URL": url,
            "KASHQ_IMPORTS": "outbox_jobs",
        }
    delete_prefix(shared_client(), prefix)


def python(env: dict[str, str], cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


DISPATCH_THEN_DIE = """
    import os, signal
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    import kashq
    from outbox_jobs import Ship

    engine = create_engine(os.environ["KASHQ_DATABASE_URL"])
    with Session(engine) as session:
        for order in range(3):
            Ship(order=order, marks="marks").dispatch(using=session)
        session.commit()
    os.kill(os.getpid(), signal.SIGKILL)  # before anything relays the jobs
"""

MIGRATE = """
    import os
    from kashq.db import migrate

    migrate.upgrade(os.environ["KASHQ_DATABASE_URL"])
"""

RELAY_THEN_DIE = """
    import os, signal
    import kashq

    manager = kashq.manager()
    redis = manager.connection("redis")

    class DiesAfterTheFirstPush:  # pushed, its row not yet deleted
        def push_once(self, envelope, keep_s=86400.0):
            redis.push_once(envelope, keep_s)
            os.kill(os.getpid(), signal.SIGKILL)

        def push(self, envelope):
            redis.push(envelope)
            os.kill(os.getpid(), signal.SIGKILL)

    manager.outbox().relay(lambda name: DiesAfterTheFirstPush())
"""


def queued(env: dict[str, str]) -> QueueSizes:
    driver = RedisDriver(env["KASHQ_REDIS_URL"], prefix=env["KASHQ_PREFIX"])
    try:
        return driver.sizes(["default"])["default"]
    finally:
        driver.close()


def relay_once(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "kashq", "outbox:relay", "--once"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_jobs_committed_by_a_killed_dispatcher_and_a_killed_relay_arrive_once_each(env, tmp_path):
    died = python(env, tmp_path, DISPATCH_THEN_DIE)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert queued(env) == QueueSizes(), "nothing is pushed before a relay runs"

    died = python(env, tmp_path, RELAY_THEN_DIE)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert queued(env) == QueueSizes(ready=1), "the first job went before the relay died"
    work_until_empty(env, tmp_path)  # it runs (and is gone) before the next relay

    assert "relayed 3 job(s)" in relay_once(env, tmp_path)
    assert queued(env) == QueueSizes(ready=2), "the first job was not pushed again"
    assert "relayed 0 job(s)" in relay_once(env, tmp_path)
    work_until_empty(env, tmp_path)
    ran = sorted(path.name for path in (tmp_path / "marks").iterdir())
    assert ran == ["0", "1", "2"]
    failed = python(env, tmp_path, "import kashq; print(kashq.manager().failed_store().count())")
    assert failed.stdout.split() == ["0"], failed.stderr


def work_until_empty(env: dict[str, str], cwd: Path) -> None:
    """Run the queue's jobs (relaying nothing: this test relays by hand)."""
    work = subprocess.run(
        [sys.executable, "-m", "kashq", "queue:work", "--stop-when-empty", "--quiet"],
        env={**env, "KASHQ_RELAY_OUTBOX": "false"}, cwd=cwd, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert work.returncode == 0, work.stderr


def test_queue_work_relays_the_outbox_by_itself(tmp_path):
    (tmp_path / "outbox_jobs.py").write_text(JOBS)
    (tmp_path / "marks").mkdir()
    prefix = f"kashq-test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}",
        "KASHQ_CONNECTION": "redis",
        "KASHQ_REDIS_URL": REDIS_URL,
        "KASHQ_PREFIX": prefix,
        "KASHQ_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "KASHQ_IMPORTS": "outbox_jobs",
    }
    work = subprocess.Popen(
        [sys.executable, "-m", "kashq", "queue:work", "--quiet"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # the relay waits on a file that does not exist yet
        # The application creates the database and kashq's tables before dispatching inside
        # a transaction (else a one-line error: the migration would wait for its lock).
        created = python(env, tmp_path, MIGRATE)
        assert created.returncode == 0, created.stderr
        dispatched = python(
            env,
            tmp_path,
            DISPATCH_THEN_DIE.replace("os.kill(os.getpid(), signal.SIGKILL)", "engine.dispose()"),
        )
        assert dispatched.returncode == 0, dispatched.stderr
        marks = tmp_path / "marks"
        assert eventually(lambda: len(list(marks.iterdir())) == 3, 30), "never relayed"
    finally:
        work.send_signal(signal.SIGTERM)
        _, err = work.communicate(timeout=60)
        delete_prefix(shared_client(), prefix)
    assert work.returncode == 0, err
