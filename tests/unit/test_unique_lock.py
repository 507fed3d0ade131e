"""UniqueLock: a unique job's claim taken at dispatch and freed by its token."""

from __future__ import annotations

import logging

import pytest

from kashq.envelope import UNIQUE_KEY, UNIQUE_TOKEN, UNIQUE_UNTIL
from kashq.exceptions import DriverError
from kashq.locks.base import LockBackend
from kashq.locks.memory import MemoryLocks
from kashq.locks.unique import UniqueLock
from kashq.testing import FakeClock

KEY = "unique:app.Report:42"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def locks(clock: FakeClock) -> MemoryLocks:
    return MemoryLocks(clock)


def test_claim_takes_the_lock_and_says_what_the_envelope_notes(locks: MemoryLocks) -> None:
    claim = UniqueLock.on(locks).claim(KEY, 60, "completed")

    assert claim is not None
    assert claim.lock.key == KEY
    assert claim.metadata == {
        UNIQUE_KEY: KEY,
        UNIQUE_TOKEN: claim.lock.token,
        UNIQUE_UNTIL: "completed",
    }
    assert locks.try_acquire(KEY, 60) is None  # held


def test_a_second_claim_of_the_same_key_is_refused_until_the_ttl_ends(
    locks: MemoryLocks, clock: FakeClock
) -> None:
    unique = UniqueLock.on(locks)
    assert unique.claim(KEY, 60, "completed") is not None

    assert unique.claim(KEY, 60, "completed") is None
    clock.advance(61)
    assert unique.claim(KEY, 60, "completed") is not None


def test_unclaim_frees_claims_of_jobs_that_were_not_pushed(locks: MemoryLocks) -> None:
    unique = UniqueLock.on(locks)
    claims = [unique.claim(f"{KEY}:{n}", 60, "completed") for n in range(2)]

    UniqueLock.unclaim(claim for claim in claims if claim is not None)

    assert all(unique.claim(f"{KEY}:{n}", 60, "completed") is not None for n in range(2))


@pytest.mark.parametrize("until", ["processing", "completed"])
def test_the_claim_is_freed_at_start_only_when_unique_until_processing(
    locks: MemoryLocks, until: str
) -> None:
    unique = UniqueLock.on(locks)
    claim = unique.claim(KEY, 60, until)
    assert claim is not None

    unique.free_at_start(claim.metadata, "job-1")

    assert (locks.try_acquire(KEY, 60) is not None) is (until == "processing")


@pytest.mark.parametrize("until", ["processing", "completed"])
def test_the_claim_is_freed_at_the_end_only_when_unique_until_completed(
    locks: MemoryLocks, until: str
) -> None:
    unique = UniqueLock.on(locks)
    claim = unique.claim(KEY, 60, until)
    assert claim is not None

    unique.free_at_end(claim.metadata, "job-1")

    assert (locks.try_acquire(KEY, 60) is not None) is (until == "completed")


def test_freeing_with_a_stale_token_leaves_a_newer_claim_alone(
    locks: MemoryLocks, clock: FakeClock
) -> None:
    unique = UniqueLock.on(locks)
    old = unique.claim(KEY, 60, "completed")
    assert old is not None
    clock.advance(61)  # the old claim expired; a newer dispatch took the key
    assert unique.claim(KEY, 60, "completed") is not None

    unique.free_at_end(old.metadata, "job-1")

    assert locks.try_acquire(KEY, 60) is None


def test_free_claims_frees_the_claims_of_removed_jobs_by_key_and_token(
    locks: MemoryLocks,
) -> None:
    unique = UniqueLock.on(locks)
    claims = [unique.claim(f"{KEY}:{n}", 60, "completed") for n in range(2)]

    unique.free_claims([(c.lock.key, c.lock.token) for c in claims if c is not None])

    assert all(locks.try_acquire(f"{KEY}:{n}", 60) is not None for n in range(2))


def test_a_job_that_is_not_unique_never_asks_for_the_lock_backend() -> None:
    def no_backend() -> LockBackend:
        raise AssertionError("asked for the lock backend")

    unique = UniqueLock(no_backend)

    unique.free_at_start({}, "job-1")
    unique.free_at_end({"app": "value"}, "job-1")
    unique.free_at_start(None, "job-1")
    unique.free_claims([])


class _Unreachable(MemoryLocks):
    def release_token(self, key: str, token: str) -> bool:
        raise DriverError("lock store unreachable")


def test_a_claim_that_cannot_be_freed_is_logged_and_left_to_its_ttl(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    locks = _Unreachable(clock)
    claim = UniqueLock.on(locks).claim(KEY, 60, "completed")
    assert claim is not None

    with caplog.at_level(logging.WARNING, logger="kashq.locks.unique"):
        UniqueLock.on(locks).free_at_end(claim.metadata, "job-1")
        UniqueLock.unclaim([claim])  # quietly: the dispatch's own error is what matters

    assert [r.getMessage() for r in caplog.records] == [
        f"could not free unique lock {KEY} of job job-1: lock store unreachable"
    ]
