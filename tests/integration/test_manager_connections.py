"""Connections built from settings, and the zero-configuration default across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from kashq import Job, MemoryFailedJobStore, QueueManager
from kashq.config import load_settings
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver
from kashq.failed.database import DatabaseFailedJobStore
from tests.support.redis import delete_prefix, shared_client
from tests.support.services import REDIS_URL

RAN: list[int] = []


class Counted(Job):
    n: int

    def handle(self) -> None:
        RAN.append(self.n)


class Broken(Job):
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("broken on purpose")


def test_default_connection_is_the_database_with_failed_jobs_in_the_same_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    manager = QueueManager(load_settings(database_url=url))
    try:
        assert isinstance(manager.connection(), DatabaseDriver)
        assert isinstance(manager.failed_store(), DatabaseFailedJobStore)
        RAN.clear()
        manager.dispatch(Counted(n=1))
        manager.dispatch(Broken())
        manager.worker(stop_when_empty=True).run(1)
        assert RAN == [1]
        [failed] = manager.failed_store().all()
        assert (failed.connection, failed.job_type) == ("database", Broken.__kashq_name__)
        assert failed.error == "RuntimeError: broken on purpose"
    finally:
        manager.close()


def test_redis_connection_uses_the_configured_url_and_prefix(tmp_path):
    shared_client()
    prefix = f"kashq-test-{os.getpid()}-{time.monotonic_ns()}"
    settings = load_settings(
        connection="redis",
        redis_url=REDIS_URL,
        prefix=prefix,
        database_url=f"sqlite:///{tmp_path / 'failed.sqlite'}",
    )
    manager = QueueManager(settings)
    try:
        driver = manager.connection()
        assert isinstance(driver, RedisDriver) and driver.prefix == prefix
        RAN.clear()
        manager.dispatch_many([Counted(n=1), Counted(n=2)])
        assert driver.client.exists(f"{prefix}:{{default}}:jobs")
        manager.worker(stop_when_empty=True).run(1)
        assert sorted(RAN) == [1, 2]
        assert isinstance(manager.failed_store(), DatabaseFailedJobStore)
    finally:
        delete_prefix(manager.connection().client, prefix)  # type: ignore[attr-defined]
        manager.close()


def test_memory_and_sync_connections_keep_failed_jobs_in_memory():
    for name in ("memory", "sync"):
        manager = QueueManager(load_settings(connection=name))
        assert isinstance(manager.failed_store(), MemoryFailedJobStore)
        manager.close()


def test_a_job_dispatched_in_one_process_is_run_by_a_worker_in_another_with_no_setup(tmp_path):
    (tmp_path / "app_jobs.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from kashq import Job

            class WriteFile(Job):
                name: str

                def handle(self) -> None:
                    Path(self.name).write_text("done")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASHQ_")}
    env["PYTHONPATH"] = str(tmp_path)

    def python(code: str) -> None:
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=60)

    python("from app_jobs import WriteFile; WriteFile(name='out.txt').dispatch()")
    assert (tmp_path / "kashq.sqlite").is_file(), "the default SQLite file was created"
    assert not (tmp_path / "out.txt").exists()
    python("import kashq, app_jobs; kashq.manager().worker(stop_when_empty=True).run(1)")
    assert (tmp_path / "out.txt").read_text() == "done"


def test_a_worker_on_a_durable_connection_records_failures_durably_whatever_the_default(
    tmp_path,
):
    settings = load_settings(
        connection="memory", database_url=f"sqlite:///{tmp_path / 'failed.sqlite'}"
    )
    manager = QueueManager(settings)
    try:
        assert isinstance(manager.worker("database").failed_store, DatabaseFailedJobStore)
        assert isinstance(manager.worker("memory").failed_store, MemoryFailedJobStore)
        assert isinstance(manager.failed_store(), MemoryFailedJobStore)
    finally:
        manager.close()


def test_close_closes_the_failed_store_the_manager_built(tmp_path):
    url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    manager = QueueManager(load_settings(database_url=url))
    store = manager.failed_store()
    assert isinstance(store, DatabaseFailedJobStore)
    assert store.count() == 0
    assert store.engine.pool.checkedin() == 1

    manager.close()

    assert store.engine.pool.checkedin() == 0
