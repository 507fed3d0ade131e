"""Shared fixtures: every test starts with no current manager and no fake installed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from kashq import dispatcher
from kashq.manager import swap_manager
from tests.support import report
from tests.support.services import RedisClusterNodes, RedisServer, in_ci


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the processes the tests start, however the suite was launched.

    A suite started in the background by a shell without job control inherits
    SIGINT ignored, and an in-process command that restores the handler it found
    puts the ignore back; every process started after that inherits it, and the
    tests that stop a command with SIGINT wait for nothing.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_dispatcher() -> Iterator[None]:
    previous_manager = swap_manager(None)
    previous_override = dispatcher.set_dispatcher(None)
    try:
        yield
    finally:
        current = swap_manager(previous_manager)
        dispatcher.set_dispatcher(previous_override)
        if current is not None and current is not previous_manager:
            current.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A local three-master Redis Cluster for the whole session (private servers).

    A test that restarts a node waits for ``cluster_state:ok`` before it ends.
    """
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisClusterNodes) -> str:
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """URLs of three private redis-servers for the whole session (sharding tests).

    Tests that kill a shard start their own servers instead.
    """
    workdir = tmp_path_factory.mktemp("redis-shards")
    servers = [RedisServer(workdir) for _ in range(3)]
    try:
        for server in servers:
            server.start()
        yield [server.url for server in servers]
    finally:
        for server in servers:
            server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Chaos and soak tests (about 13 minutes) run in CI, or locally with KASHQ_TEST_CHAOS=1."""
    if in_ci() or os.environ.get("KASHQ_TEST_CHAOS", "").lower() in ("1", "true", "yes"):
        return
    skip = pytest.mark.skip(reason="chaos/soak test: set KASHQ_TEST_CHAOS=1 to run it (CI does)")
    for item in items:
        if item.get_closest_marker("chaos") or item.get_closest_marker("soak"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if report.LINES:
        terminalreporter.section("chaos and soak reports")
        for line in report.LINES:
            terminalreporter.write_line(line)
