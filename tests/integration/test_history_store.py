"""The metrics history on every storage kind, built by ``store_for(driver, settings)``.

Runs on the driver contract suite's factories (memory, SQLite, PostgreSQL,
MariaDB, Redis, Redis Cluster) with their fake clock. The storage bound is
proven on the storage itself: keys and their time to live, rows, minutes held.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kashq.config import load_settings
from kashq.drivers.base import Driver
from kashq.history import OTHER, HistoryStore, MemoryHistoryStore, MinuteFigures, store_for
from kashq.history.database import DatabaseHistoryStore
from kashq.history.redis import RedisHistoryStore
from kashq.testing import FakeClock
from tests.integration import test_driver_contract as contract

clock = contract.clock
KINDS = sorted([*contract.FACTORIES, contract.CLUSTER])
KEEP_S = 600.0  # ten minutes
SERIES_MAX = 5


@pytest.fixture(params=KINDS)
def driver(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Driver]:
    with contract.open_driver(request, request.param, clock, tmp_path) as made:
        yield made


@pytest.fixture
def store(driver: Driver) -> Iterator[HistoryStore]:
    settings = load_settings(keep_history=KEEP_S, history_series_max=SERIES_MAX)
    made = store_for(driver, settings)
    try:
        yield made
    finally:
        made.close()


def now_minute(clock: FakeClock) -> int:
    return int(clock.time() // 60)


def figures(minute: int, queue: str = "emails", job_type: str = "app.Send", **numbers: float):
    return MinuteFigures(minute, queue, job_type, **numbers)  # type: ignore[arg-type]


def test_adds_up_counts_and_keeps_the_longest_times(store: HistoryStore, clock: FakeClock) -> None:
    minute = now_minute(clock)
    store.add([figures(minute, done=3, runs=3, run_ms=30.0, run_max_ms=20.0, waits=3, wait_ms=9.0,
                       wait_max_ms=5.0)])  # fmt: skip
    store.add([figures(minute, done=1, failed=2, retried=1, runs=4, run_ms=8.5, run_max_ms=4.0,
                       waits=4, wait_ms=40.0, wait_max_ms=25.0),
               figures(minute, queue="sms", done=7)])  # fmt: skip
    [emails, sms] = store.read(minute, minute)
    assert emails == figures(minute, done=4, failed=2, retried=1, runs=7, run_ms=38.5,
                             run_max_ms=20.0, waits=7, wait_ms=49.0, wait_max_ms=25.0)  # fmt: skip
    assert sms == figures(minute, queue="sms", done=7)


def test_reads_the_window_asked_for_minute_by_minute(store: HistoryStore, clock: FakeClock) -> None:
    minute = now_minute(clock)
    store.add([figures(minute - m, done=m + 1) for m in range(4)])
    found = store.read(minute - 2, minute - 1)
    assert [(f.minute, f.done) for f in found] == [(minute - 2, 3), (minute - 1, 2)]
    with pytest.raises(ValueError, match="ends before it starts"):
        store.read(minute, minute - 1)
    with pytest.raises(ValueError, match="span must be one of"):
        store.read(minute, minute, 7)


def test_every_write_also_adds_up_in_its_quarter_of_an_hour(
    store: HistoryStore, clock: FakeClock
) -> None:
    quarter = now_minute(clock) - now_minute(clock) % 15  # this quarter of an hour
    store.add([figures(quarter + m, done=1, run_max_ms=float(m)) for m in range(15)])
    store.add([figures(quarter + 15, done=5)])
    found = store.read(quarter - 20, quarter + 16, 15)
    assert [(f.minute, f.done, f.run_max_ms) for f in found] == [
        (quarter, 15, 14.0), (quarter + 15, 5, 0.0)
    ]  # fmt: skip
    kept = [m for m in range(quarter, quarter + 15) if m >= now_minute(clock) - KEEP_S // 60]
    assert [f.minute for f in store.read(quarter, quarter + 14)] == kept  # the minutes too


def test_a_minute_past_its_age_is_neither_written_nor_read(
    store: HistoryStore, clock: FakeClock
) -> None:
    minute = now_minute(clock)
    store.add([figures(minute - 11, done=1)])  # ended more than KEEP_S ago: dropped
    store.add([figures(minute - 5, done=1)])
    assert store.read(minute - 20, minute) == [figures(minute - 5, done=1)]
    clock.advance(KEEP_S)
    assert store.read(minute - 20, minute + 20) == []


def test_a_minute_holds_at_most_series_max_series(store: HistoryStore, clock: FakeClock) -> None:
    minute = now_minute(clock)
    store.add([figures(minute, job_type=f"app.Job{i}", done=1) for i in range(3)])
    store.add([figures(minute, job_type=f"app.Job{i}", done=1) for i in range(8)])
    found = {(f.queue, f.job_type): f.done for f in store.read(minute, minute)}
    assert len(found) == SERIES_MAX + 1
    assert found[(OTHER, OTHER)] == 3  # Job5, Job6 and Job7 came when five were held
    assert sum(found.values()) == 11  # nothing lost: folded, not dropped


def test_storage_stays_within_its_bound(store: HistoryStore, clock: FakeClock) -> None:
    """Three retention periods of writes, every series_max + 3 series a minute: the storage
    holds at most (keep_s / 60 + keep_s / 900 + 4) spans of at most series_max + 1 series."""
    spans_kept = int(KEEP_S // 60) + int(KEEP_S // 900) + 4
    for _ in range(3 * int(KEEP_S // 60)):
        minute = now_minute(clock)
        store.add([figures(minute, job_type=f"app.Job{i}", done=1) for i in range(SERIES_MAX + 3)])
        clock.advance(60)
    if isinstance(store, RedisHistoryStore):
        # Redis expires keys on its own clock, not the fake one: a key is written only while
        # its minute is within its age, and then lives at most until the minute is past it.
        keys = list(store.client.scan_iter(match=f"{store.prefix}:history:*", count=1000))
        minutes = 3 * int(KEEP_S // 60)
        assert len(keys) == minutes + len({m // 15 for m in range(minutes)}) + 1  # none swept
        for key in keys:
            span = int(key.split(b":")[-2])
            assert 0 < store.client.pttl(key) / 1000 <= 60 * span + KEEP_S
            assert store.client.hlen(key) <= SERIES_MAX + 1
    elif isinstance(store, DatabaseHistoryStore):
        assert store.rows() <= spans_kept * (SERIES_MAX + 1)
    else:
        assert isinstance(store, MemoryHistoryStore)
        assert store.spans() <= spans_kept
    for span in (1, 15):
        found = store.read(now_minute(clock) - 100, now_minute(clock), span)
        assert len(found) <= spans_kept * (SERIES_MAX + 1)
