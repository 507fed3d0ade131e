"""QueueDispatcher: envelope, unique claim, push, counting, on the connections it is given."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from kashq import Job, NamedJob, dispatch_counts
from kashq.dispatcher import QueueDispatcher
from kashq.drivers.base import Driver
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import UNIQUE_KEY, UNIQUE_TOKEN, UNIQUE_UNTIL, Envelope, decode
from kashq.exceptions import DriverError
from kashq.locks.base import LockBackend
from kashq.locks.memory import MemoryLocks
from kashq.testing import FakeClock


class Plain(Job):
    n: int = 0

    def handle(self) -> None:
        pass


class Once(Job):
    n: int = 0
    unique_for = 60

    def handle(self) -> None:
        pass


class UntilStarted(Once):
    unique_until = "processing"


class Recorder:
    """An event recorder's dispatch side."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def dispatched(self, envelopes: Iterable[Envelope]) -> None:
        self.batches.append([e.id for e in envelopes])


class Batches(MemoryDriver):
    """A memory driver that notes each round trip (``push`` and ``push_many`` calls)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.round_trips = 0

    def push(self, envelope: Envelope) -> None:
        self.round_trips += 1
        super().push(envelope)

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        self.round_trips += 1
        super().push_many(envelopes)


class Unreachable(MemoryDriver):
    def push(self, envelope: Envelope) -> None:
        raise DriverError("queue unreachable")

    def push_many(self, envelopes: Sequence[Envelope]) -> None:
        raise DriverError("queue unreachable")


class Wiring:
    """Connections, their locks and recorders by name, as a queue manager gives them."""

    def __init__(self, clock: FakeClock) -> None:
        self.drivers: dict[str, MemoryDriver] = {
            "main": Batches(clock),
            "other": Batches(clock),
            "down": Unreachable(clock=clock),
        }
        self.locks = MemoryLocks(clock)  # one backend: a claim is seen from every connection
        self.recorders = {name: Recorder() for name in self.drivers}
        self.counted: list[list[str]] = []

    def connection(self, name: str | None) -> Driver:
        return self.drivers[name or "main"]

    def locks_of(self, name: str | None) -> LockBackend:
        self.connection(name)
        return self.locks

    def recorder(self, name: str | None) -> Recorder:
        return self.recorders[name or "main"]

    def round_trips(self, name: str) -> int:
        driver = self.drivers[name]
        assert isinstance(driver, Batches)
        return driver.round_trips

    def ready(self, name: str, queue: str = "default") -> list[Envelope]:
        """The envelopes waiting on connection ``name``, oldest first."""
        driver = self.drivers[name]
        found = []
        while (res := driver.reserve([queue], lease_s=60)) is not None:
            found.append(decode(res.raw))
        return found


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def wiring(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Wiring:
    wiring = Wiring(clock)
    monkeypatch.setattr(
        dispatch_counts, "count", lambda envs: wiring.counted.append([e.id for e in envs])
    )
    return wiring


@pytest.fixture
def dispatcher(wiring: Wiring, clock: FakeClock) -> QueueDispatcher:
    return QueueDispatcher(
        connection=wiring.connection,
        locks=wiring.locks_of,
        recorder=wiring.recorder,
        default_queue="default",
        clock=clock,
    )


def test_envelope_for_uses_the_default_queue_and_the_clock(
    dispatcher: QueueDispatcher, clock: FakeClock
) -> None:
    envelope = dispatcher.envelope_for(Plain(n=1))

    assert envelope.queue == "default"
    assert envelope.created_at == envelope.available_at == clock.time()
    assert dispatcher.envelope_for(Plain().on_queue("mail")).queue == "mail"


def test_dispatch_pushes_counts_and_records_one_job(
    dispatcher: QueueDispatcher, wiring: Wiring
) -> None:
    job_id = dispatcher.dispatch(Plain(n=1))

    assert [e.id for e in wiring.ready("main")] == [job_id]
    assert wiring.counted == [[job_id]]
    assert wiring.recorders["main"].batches == [[job_id]]


def test_dispatch_goes_to_the_connection_the_job_names(
    dispatcher: QueueDispatcher, wiring: Wiring
) -> None:
    job_id = dispatcher.dispatch(NamedJob("app.report", {}).on_connection("other"))

    assert wiring.ready("main") == []
    assert [e.id for e in wiring.ready("other")] == [job_id]
    assert wiring.recorders["other"].batches == [[job_id]]


def test_a_unique_job_notes_its_claim_and_an_equal_one_is_not_pushed(
    dispatcher: QueueDispatcher, wiring: Wiring
) -> None:
    first = dispatcher.dispatch(UntilStarted(n=1))

    assert dispatcher.dispatch(UntilStarted(n=1)) is None
    assert dispatcher.dispatch(UntilStarted(n=2)) is not None
    [envelope, _] = wiring.ready("main")
    assert envelope.id == first
    assert envelope.metadata[UNIQUE_KEY] == UntilStarted(n=1).unique_lock_key()
    assert envelope.metadata[UNIQUE_TOKEN]
    assert envelope.metadata[UNIQUE_UNTIL] == "processing"
    assert len(wiring.counted) == 2  # the refused one is not counted


def test_a_unique_job_whose_push_failed_frees_its_claim(
    dispatcher: QueueDispatcher, wiring: Wiring
) -> None:
    with pytest.raises(DriverError):
        dispatcher.dispatch(Once(n=1).on_connection("down"))

    assert dispatcher.dispatch(Once(n=1)) is not None
    assert len(wiring.counted) == 1


def test_dispatch_many_pushes_once_per_connection_and_keeps_the_order(
    dispatcher: QueueDispatcher, wiring: Wiring
) -> None:
    jobs = [Plain(n=1), Plain(n=2).on_connection("other"), Once(n=1), Once(n=1), Plain(n=3)]

    ids = dispatcher.dispatch_many(jobs)

    assert ids[3] is None  # equal to the one before it
    main, other = [ids[0], ids[2], ids[4]], [ids[1]]
    assert [e.id for e in wiring.ready("main")] == main
    assert [e.id for e in wiring.ready("other")] == other
    assert [wiring.round_trips(name) for name in ("main", "other")] == [1, 1]
    assert wiring.counted == [main, other]
    assert wiring.recorders["main"].batches == [main]
    assert wiring.recorders["other"].batches == [other]


def test_dispatch_many_frees_the_claims_of_connections_it_could_not_push(
    dispatcher: QueueDispatcher, wiring: Wiring
) -> None:
    jobs = [Once(n=1), Once(n=2).on_connection("down")]

    with pytest.raises(DriverError):
        dispatcher.dispatch_many(jobs)

    assert dispatcher.dispatch(Once(n=1)) is None  # pushed: its claim stands
    assert dispatcher.dispatch(Once(n=2)) is not None  # not pushed: freed


def test_clear_deletes_the_jobs_and_frees_their_claims(
    dispatcher: QueueDispatcher, wiring: Wiring
) -> None:
    dispatcher.dispatch_many([Once(n=1), Plain()])

    assert dispatcher.clear("default") == 2

    assert wiring.ready("main") == []
    assert dispatcher.dispatch(Once(n=1)) is not None


def test_counting_without_events_still_counts(wiring: Wiring, clock: FakeClock) -> None:
    dispatcher = QueueDispatcher(
        connection=wiring.connection,
        locks=wiring.locks_of,
        recorder=lambda name: None,
        default_queue="default",
        clock=clock,
    )

    job_id = dispatcher.dispatch(Plain())

    assert wiring.counted == [[job_id]]
