"""A password in a connection URL is never shown: banners, errors, ``--json``, logs, failed_jobs.

The password :data:`PASSWORD` is given every way a URL can carry one
(``user:password@``, ``?password=``, unescaped ``/`` inside it) in
``KASHQ_REDIS_URL``, ``KASHQ_DATABASE_URL`` and ``KASHQ_SHARDS``, and the
installed ``kashq`` executable is run against a private redis-server that
requires it, PostgreSQL (which trusts local connections, so any password
passes), and ports nobody listens on. No output may contain it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from kashq import MemoryFailedJobStore, NamedJob, Worker, WorkerOptions, load_settings
from kashq.cli.common import connection_address
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver
from kashq.failed.database import DatabaseFailedJobStore
from kashq.redact import hide_password, hide_secrets_in
from tests.e2e.test_cli import Run, _clean_env, _kashq_executable
from tests.support.databases import postgres_database
from tests.support.services import RedisServer, free_port

PASSWORD = "s3cr3t-pw"
SLASHED = "s3cr3t/pw"  # unescaped: URL parsers cut it in two and quote the halves
SECRETS = (PASSWORD, "s3cr3t")


def assert_hidden(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def kashq(cwd: Path, env: dict[str, str], *args: str) -> Run:
    """The installed ``kashq`` executable, run in ``cwd`` with only ``env`` as settings."""
    proc = subprocess.run(
        [str(_kashq_executable()), *args],
        cwd=cwd,
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server that refuses clients without :data:`PASSWORD`."""
    workdir = tmp_path_factory.mktemp("locked-redis")
    server = RedisServer(workdir, extra_args=("--requirepass", PASSWORD)).start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- hiding


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:6379/0",
        f"redis://user:{PASSWORD}@127.0.0.1:6379/0",
        f"rediss://127.0.0.1:6380/0?password={PASSWORD}",
        f"unix:///run/redis.sock?db=0&password={PASSWORD}",
        f"redis+cluster://:{PASSWORD}@10.0.0.1:7000",
        f"redis://:{SLASHED}@127.0.0.1:6379/0",
        "redis://:s3cr3t@pw@127.0.0.1:6379/0",
        "redis://:s3cr3t?pw@127.0.0.1:6379/0",
        f"postgresql+psycopg://app:{PASSWORD}@db:5432/app",
        f"postgresql+psycopg://app@db/app?sslmode=require&PASSWORD={PASSWORD}",
        f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:3306/test",
    ],
)
def test_every_way_a_url_carries_a_password_is_hidden(url: str) -> None:
    shown = hide_password(url)

    assert_hidden(shown)
    assert "***" in shown


@pytest.mark.parametrize(
    "url", ["sqlite:///kashq.sqlite", "sqlite:////var/lib/a@b:c/kashq.sqlite",
            "redis://127.0.0.1:6379/0", "redis://user@host:6379/0", "unix:///run/redis.sock"],
)  # fmt: skip
def test_a_url_without_a_password_is_shown_as_it_is(url: str) -> None:
    assert hide_password(url) == url


def test_a_message_quoting_a_piece_of_a_malformed_password_hides_the_piece() -> None:
    message = "Port could not be cast to integer value as 's3cr3t'"
    url = f"redis://:{SLASHED}@127.0.0.1:6379/0"

    assert hide_secrets_in(message, url) == "Port could not be cast to integer value as '***'"


def test_banner_addresses_hide_passwords_of_every_connection() -> None:
    settings = {
        "redis": {"redis_url": f"redis://127.0.0.1:6379/0?password={PASSWORD}"},
        "database": {"database_url": f"postgresql+psycopg://app:{PASSWORD}@db/app"},
        "sharded": {"shards": [f"redis://:{PASSWORD}@a:1/0", f"unix:///s?password={PASSWORD}"]},
    }
    for connection, values in settings.items():
        address = connection_address(load_settings(connection=connection, **values))
        assert_hidden(address)
        assert "***" in address


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("form", "mode"), [("userinfo", "text"), ("query", "--json")], ids=["userinfo", "query"]
)
def test_queue_work_banner_hides_the_redis_password(
    form: str, mode: str, locked_redis: RedisServer, tmp_path: Path
) -> None:
    port = locked_redis.port
    url = {
        "userinfo": f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        "query": f"redis://127.0.0.1:{port}/0?password={PASSWORD}",
    }[form]
    env = {"KASHQ_CONNECTION": "redis", "KASHQ_REDIS_URL": url, "KASHQ_PREFIX": uuid.uuid4().hex}
    flags = ["--json"] if mode == "--json" else []

    run = kashq(tmp_path, env, "queue:work", "--stop-when-empty", *flags)

    assert run.exit_code == 0, run.output
    assert_hidden(run.output)
    if mode == "--json":
        banner = json.loads(run.stdout.splitlines()[0])
        assert banner["url"] == hide_password(url)
    else:
        assert f"kashq queue:work · redis ({hide_password(url)})" in run.stdout


def test_queue_work_and_migrate_hide_the_database_password(tmp_path: Path) -> None:
    with postgres_database() as schema_url:
        url = make_url(schema_url).set(password=PASSWORD).render_as_string(hide_password=False)
        env = {"KASHQ_CONNECTION": "database", "KASHQ_DATABASE_URL": url}

        migrated = kashq(tmp_path, env, "migrate")
        work = kashq(tmp_path, env, "queue:work", "--stop-when-empty", "--json")
        listed = kashq(tmp_path, env, "queue:failed", "--json")

    for run in (migrated, work, listed):
        assert run.exit_code == 0, run.output
        assert_hidden(run.output)
    banner = json.loads(work.stdout.splitlines()[0])
    assert banner["url"] == banner["failed_jobs"] == hide_password(url)
    assert "***" in banner["url"]


def test_sharded_banner_warnings_and_worker_logs_hide_the_password(
    locked_redis: RedisServer, tmp_path: Path
) -> None:
    up, down = locked_redis.port, free_port()
    shards = (
        f"redis://:{PASSWORD}@127.0.0.1:{up}/0,redis://:{PASSWORD}@127.0.0.1:{down}/0,"
        f"redis://127.0.0.1:{up}/1?password={PASSWORD}"
    )
    env = {"KASHQ_CONNECTION": "sharded", "KASHQ_SHARDS": shards, "KASHQ_PREFIX": uuid.uuid4().hex}

    run = kashq(tmp_path, env, "queue:work", "--once", "--sleep", "0.1", "--json")

    assert run.exit_code == 0, run.output
    banner = json.loads(run.stdout.splitlines()[0])
    assert banner["url"].startswith("least_loaded: redis://:***@")
    assert f"shard 127.0.0.1:{down}/0 is down" in run.stderr  # the CLI's warning and the log's
    assert_hidden(run.output)


DOWN_CASES = {
    "redis": ("redis", f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0", "queue:size"),
    "redis-query": ("redis", f"redis://127.0.0.1:{{port}}/0?password={PASSWORD}", "queue:size"),
    "redis-slashed": ("redis", f"redis://:{SLASHED}@127.0.0.1:{{port}}/0", "queue:size"),
    "unix-query": ("redis", f"unix:///nonexistent/redis.sock?password={PASSWORD}", "queue:size"),
    "cluster": ("redis", f"redis+cluster://:{PASSWORD}@127.0.0.1:{{port}}/0", "queue:size"),
    "sharded": ("sharded", f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0", "queue:size"),
    "postgres": (
        "database", f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:{{port}}/app", "queue:failed"
    ),
    "postgres-query": (
        "database", f"postgresql+psycopg://app@127.0.0.1:{{port}}/app?password={PASSWORD}",
        "migrate",
    ),
}  # fmt: skip
SETTING = {"redis": "KASHQ_REDIS_URL", "sharded": "KASHQ_SHARDS", "database": "KASHQ_DATABASE_URL"}


@pytest.mark.parametrize("case", sorted(DOWN_CASES))
def test_a_server_that_is_down_is_one_error_line_without_the_password(
    case: str, tmp_path: Path
) -> None:
    connection, url, command = DOWN_CASES[case]
    env = {"KASHQ_CONNECTION": connection, SETTING[connection]: url.format(port=free_port())}
    extra = [] if command == "migrate" else ["--json"]

    for args in (["queue:work", "--stop-when-empty", "--json"], [command, *extra]):
        run = kashq(tmp_path, env, *args)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.exit_code != 0 and len(lines) == 1, run.output
        assert lines[0].startswith("error: ") and "Traceback" not in run.output
        assert_hidden(run.output)


# --------------------------------------------------------------------------- logs


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0",
        f"postgresql+psycopg://app@127.0.0.1:{{port}}/app?password={PASSWORD}",
        f"postgresql+psycopg://app:{SLASHED}@127.0.0.1:{{port}}/app",
    ],
    ids=["redis", "postgres-query", "postgres-slashed"],
)
def test_a_worker_logs_an_unreachable_queue_without_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    address = url.format(port=free_port())
    driver = RedisDriver(address) if address.startswith("redis") else DatabaseDriver(address)
    worker = Worker(driver, MemoryFailedJobStore(), WorkerOptions(sleep_s=0.05))
    caplog.set_level(logging.DEBUG)

    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not any("queue unavailable" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the worker never reported the queue down"
            time.sleep(0.02)
    finally:
        worker.stop(10)
        driver.close()

    assert_hidden(caplog.text)


# --------------------------------------------------------------------------- failed_jobs

JOBS_MODULE = """
import os, time
import kashq
from kashq import Job, NamedJob
from kashq.drivers.database import DatabaseDriver
from kashq.drivers.redis import RedisDriver


@kashq.handler("secret_jobs.push_elsewhere")
def push_elsewhere(envelope):
    url = os.environ[envelope.payload["setting"]]
    driver = RedisDriver(url) if url.startswith("redis") else DatabaseDriver(url)
    driver.push(NamedJob("elsewhere").to_envelope(default_queue="default", now=time.time()))


class DispatchToRedis(Job):
    def handle(self):
        NamedJob("elsewhere").on_connection("redis").dispatch()
"""


def test_failed_jobs_of_driver_errors_keep_no_password_in_error_or_traceback(
    tmp_path: Path,
) -> None:
    (tmp_path / "secret_jobs.py").write_text(JOBS_MODULE)
    db_url = f"sqlite:///{tmp_path / 'kashq.sqlite'}"
    closed = free_port()
    env = {
        "KASHQ_DATABASE_URL": db_url,
        "KASHQ_REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{closed}/0",
        "APP_REDIS_SLASHED": f"redis://:{SLASHED}@127.0.0.1:{closed}/0",
        "APP_POSTGRES": f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:{closed}/app",
        "APP_POSTGRES_QUERY": f"postgresql+psycopg://app@127.0.0.1:{closed}/app?password={PASSWORD}",
    }
    jobs = [NamedJob("secret_jobs.DispatchToRedis")] + [
        NamedJob("secret_jobs.push_elsewhere", {"setting": name})
        for name in ("APP_REDIS_SLASHED", "APP_POSTGRES", "APP_POSTGRES_QUERY")
    ]
    queue = DatabaseDriver(db_url)
    queue.push_many([job.to_envelope(default_queue="default", now=time.time()) for job in jobs])
    queue.close()

    work = kashq(
        tmp_path, env, "queue:work", "--import", "secret_jobs.py", "--stop-when-empty",
        "--tries", "1",
    )  # fmt: skip
    listed = kashq(tmp_path, env, "queue:failed", "--json")
    shown = kashq(tmp_path, env, "queue:failed:show", "1", "--json")

    for run in (work, listed, shown):
        assert run.exit_code == 0, run.output
        assert_hidden(run.output)
    store = DatabaseFailedJobStore(db_url)
    records = store.all()
    store.close()
    assert len(records) == len(jobs)
    for record in records:
        assert_hidden(record.error + record.exception)
        assert "DriverError" in record.exception or "ConfigError" in record.exception
    assert "Traceback (most recent call last)" in json.loads(shown.stdout)["exception"]
