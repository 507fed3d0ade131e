"""The built-in middleware's arguments: durations named ``*_s``, no builtin shadowed,
and the older names (``max``, ``per_seconds``, ``release_after`` ...) still accepted."""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from kashq import Job, Outcome
from kashq.locks import backend_for
from kashq.middleware import Middleware, RateLimited, ThrottlesExceptions, WithoutOverlapping
from tests.unit.test_middleware import Harness

CALLS: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


class OverlappingInSeconds(Job):
    key: str

    def middleware(self) -> list[Middleware]:
        return [WithoutOverlapping(self.key, release_after_s=3, expire_after_s=30)]

    def handle(self) -> None:
        CALLS.append(("ran", self.key))


class LimitedInSeconds(Job):
    n: int

    def middleware(self) -> list[Middleware]:
        return [RateLimited("unit-api-s", limit=1, per_s=10)]

    def handle(self) -> None:
        CALLS.append(("ran", self.n))


class ThrottledInSeconds(Job):
    tries = 10
    backoff = 0

    def middleware(self) -> list[Middleware]:
        return [ThrottlesExceptions(1, decay_s=30)]

    def handle(self) -> None:
        CALLS.append(("ran", self.attempts()))
        raise RuntimeError("upstream down")


def test_without_overlapping_takes_its_durations_as_release_after_s_and_expire_after_s():
    h = Harness()
    held = backend_for(h.driver).try_acquire(f"overlap:{OverlappingInSeconds.__kashq_name__}:a", 60)
    assert held is not None
    h.push(OverlappingInSeconds(key="a"))
    assert h.worker.run_next() is Outcome.RETRIED
    assert [e.delay_s for e in h.retried()] == [3.0]
    held.release()
    h.clock.advance(3)
    assert h.worker.run_next() is Outcome.COMPLETED
    assert CALLS == [("ran", "a")]


def test_rate_limited_takes_limit_and_per_s():
    h = Harness()
    h.clock.advance(-(h.clock.time() % 10) + 4)  # four seconds into a window
    h.push(LimitedInSeconds(n=1))
    h.push(LimitedInSeconds(n=2))
    assert [h.worker.run_next() for _ in range(2)] == [Outcome.COMPLETED, Outcome.RETRIED]
    assert [e.delay_s for e in h.retried()] == [pytest.approx(6.0)]


def test_throttles_exceptions_takes_decay_s():
    h = Harness()
    h.clock.advance(-(h.clock.time() % 30))  # at the start of a window
    h.push(ThrottledInSeconds())
    assert h.worker.run_next() is Outcome.RETRIED  # exception 1: throttled from now on
    assert h.worker.run_next() is Outcome.RETRIED  # not run
    assert CALLS == [("ran", 1)]
    assert h.retried()[-1].delay_s == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        (
            lambda: WithoutOverlapping("k", release_after=2, expire_after=20),
            lambda: WithoutOverlapping("k", release_after_s=2, expire_after_s=20),
        ),
        (lambda: RateLimited("k", max=5, per_seconds=60), lambda: RateLimited("k", 5, 60)),
        (lambda: RateLimited("k", 5, per_seconds=60), lambda: RateLimited("k", limit=5, per_s=60)),
        (
            lambda: ThrottlesExceptions(3, decay_seconds=120, key="x"),
            lambda: ThrottlesExceptions(3, decay_s=120, key="x"),
        ),
    ],
)
def test_built_in_middleware_accept_their_older_argument_names_as_keywords(
    older: Callable[[], object], newer: Callable[[], object]
) -> None:
    assert settings_of(older()) == settings_of(newer())


SETTINGS = {
    WithoutOverlapping: ("key", "release_after_s", "expire_after_s", "count_attempt"),
    RateLimited: ("key", "limit", "per_s"),
    ThrottlesExceptions: ("max_exceptions", "decay_s", "key"),
}


def settings_of(middleware: object) -> tuple[object, ...]:
    """A built-in middleware's settings, read by their current names."""
    return tuple(getattr(middleware, name) for name in SETTINGS[type(middleware)])


def test_built_in_middleware_still_answer_to_their_older_attribute_names():
    overlapping = WithoutOverlapping("k", release_after_s=2, expire_after_s=20)
    limited = RateLimited("k", limit=5, per_s=60)
    throttles = ThrottlesExceptions(3, decay_s=120)

    assert (overlapping.release_after, overlapping.expire_after) == (2.0, 20.0)
    assert (limited.max, limited.per_seconds) == (5, 60.0)
    assert throttles.decay_seconds == 120.0


@pytest.mark.parametrize(
    ("make", "newer", "older"),
    [
        (
            lambda: WithoutOverlapping("k", release_after_s=1, release_after=2),
            "release_after_s",
            "release_after",
        ),
        (
            lambda: WithoutOverlapping(expire_after_s=1, expire_after=2),
            "expire_after_s",
            "expire_after",
        ),
        (lambda: RateLimited("k", 5, 60, max=6), "limit", "max"),
        (lambda: RateLimited("k", limit=5, max=6, per_s=60), "limit", "max"),
        (lambda: RateLimited("k", 5, per_s=60, per_seconds=61), "per_s", "per_seconds"),
        (lambda: ThrottlesExceptions(3, 120, decay_seconds=60), "decay_s", "decay_seconds"),
    ],
)
def test_giving_a_middleware_argument_under_both_its_names_is_a_type_error(
    make: Callable[[], object], newer: str, older: str
) -> None:
    with pytest.raises(TypeError) as raised:
        make()

    message = str(raised.value)
    assert f"got both {newer!r} and its older name {older!r}" in message
    assert "\n" not in message


def test_no_built_in_middleware_argument_shadows_a_builtin_or_spells_out_seconds():
    for middleware in (WithoutOverlapping, RateLimited, ThrottlesExceptions):
        names = list(inspect.signature(middleware).parameters)
        assert not [n for n in names if hasattr(builtins, n)], middleware
        assert not [n for n in names if n.endswith("_seconds")], middleware
