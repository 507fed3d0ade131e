"""Jobs: class options, fluent per-dispatch options, validation and dispatching."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

import kashq
from kashq.drivers import QueueSizes
from kashq.envelope import Envelope, decode
from kashq.manager import swap_manager
from kashq.testing import memory_queue

NOW = 1_700_000_000.0
SYNC_RAN: list[int] = []
SYNC_THREADS: list[int] = []


class JobOptionedJob(kashq.Job):
    queue = "mail"
    tries = 4
    backoff = 2.5
    timeout = 30
    priority = 7
    max_deliveries = 2

    n: int = 0

    def handle(self) -> None:
        pass


class JobPlainJob(kashq.Job):
    n: int = 0

    def handle(self) -> None:
        pass


class JobPayloadJob(kashq.Job):
    count: int
    label: str = "x"

    def handle(self) -> None:
        pass


class JobSyncAppendJob(kashq.Job):
    value: int

    def handle(self) -> None:
        SYNC_RAN.append(self.value)
        SYNC_THREADS.append(threading.get_ident())


def envelope_of(job: kashq.Job | kashq.NamedJob, default_queue: str = "default") -> Envelope:
    return job.to_envelope(default_queue=default_queue, now=NOW)


def define_job(body: str) -> type[kashq.Job]:
    """Define a Job subclass from source (for class-definition errors)."""
    namespace: dict[str, Any] = {"kashq": kashq, "__name__": __name__}
    with warnings.catch_warnings():
        # pydantic warns about fields shadowing parent attributes before kashq raises
        warnings.simplefilter("ignore", UserWarning)
        exec(f"class BadJob(kashq.Job):\n{body}", namespace)
    return namespace["BadJob"]  # type: ignore[no-any-return]


# -- class options ------------------------------------------------------------------


def test_class_options_end_up_in_the_envelope() -> None:
    env = envelope_of(JobOptionedJob(n=3))

    assert env.type == f"{__name__}.JobOptionedJob"
    assert env.queue == "mail"
    assert env.max_tries == 4
    assert env.backoff_s == 2.5
    assert env.timeout_s == 30
    assert env.priority == 7
    assert env.max_deliveries == 2
    assert env.payload == {"n": 3}
    assert env.created_at == NOW
    assert env.available_at == NOW
    assert env.attempts == 0
    assert env.metadata == {}
    assert env.failure is None


def test_unset_options_stay_none_and_queue_comes_from_default_queue() -> None:
    env = envelope_of(JobPlainJob(), default_queue="fallback")

    assert env.queue == "fallback"
    assert env.max_tries is None
    assert env.backoff_s is None
    assert env.timeout_s is None
    assert env.max_deliveries is None
    assert env.priority == 0
    assert env.metadata == {}
    assert env.available_at == env.created_at == NOW


def test_class_queue_wins_over_default_queue() -> None:
    assert envelope_of(JobOptionedJob(), default_queue="fallback").queue == "mail"


def test_each_envelope_gets_a_fresh_id() -> None:
    job = JobPlainJob()

    assert envelope_of(job).id != envelope_of(job).id


def test_subclass_inherits_class_options_and_registers_its_own_name() -> None:
    class JobChildJob(JobOptionedJob):
        priority = 1

    env = envelope_of(JobChildJob())

    assert env.type.endswith("JobChildJob")
    assert env.type != JobOptionedJob.__kashq_name__
    assert env.queue == "mail"
    assert env.max_tries == 4
    assert env.priority == 1


# -- fluent options ------------------------------------------------------------------


def test_fluent_options_override_class_options() -> None:
    job = (
        JobOptionedJob()
        .on_queue("other")
        .with_priority(1)
        .with_max_retries(9)
        .with_backoff(0.5)
        .with_timeout(3)
        .with_metadata(user_id=123, trace="t-1")
        .delay(5)
    )

    env = envelope_of(job)

    assert env.queue == "other"
    assert env.priority == 1
    assert env.max_tries == 9
    assert env.backoff_s == 0.5
    assert env.timeout_s == 3.0
    assert env.metadata == {"user_id": "123", "trace": "t-1"}
    assert env.available_at == NOW + 5
    assert env.created_at == NOW
    assert env.max_deliveries == 2  # no fluent override; the class value stays


def test_fluent_methods_return_the_same_job() -> None:
    job = JobPlainJob()

    assert job.on_queue("q") is job
    assert job.with_priority(1) is job
    assert job.with_max_retries(2) is job
    assert job.with_backoff(1) is job
    assert job.with_timeout(1) is job
    assert job.with_metadata(a=1) is job
    assert job.delay(1) is job
    assert job.on_connection("memory") is job


def test_with_priority_zero_overrides_a_nonzero_class_priority() -> None:
    assert envelope_of(JobOptionedJob().with_priority(0)).priority == 0


def test_with_metadata_stringifies_values_and_accumulates() -> None:
    job = JobPlainJob().with_metadata(user_id=123).with_metadata(flag=True, ratio=1.5)

    assert envelope_of(job).metadata == {"user_id": "123", "flag": "True", "ratio": "1.5"}


def test_delay_accepts_seconds_and_timedelta() -> None:
    assert envelope_of(JobPlainJob().delay(5)).available_at == NOW + 5
    assert envelope_of(JobPlainJob().delay(2.5)).available_at == NOW + 2.5
    assert envelope_of(JobPlainJob().delay(timedelta(minutes=5))).available_at == NOW + 300


def test_with_backoff_accepts_a_timedelta() -> None:
    assert envelope_of(JobPlainJob().with_backoff(timedelta(seconds=4))).backoff_s == 4.0


def test_fluent_options_are_per_instance() -> None:
    JobOptionedJob().on_queue("elsewhere").with_priority(99)

    env = envelope_of(JobOptionedJob())

    assert env.queue == "mail"
    assert env.priority == 7


def test_dispatch_at_sets_available_at_to_the_datetime_timestamp() -> None:
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)

    with kashq.testing.fake() as fake:
        JobPlainJob().dispatch_at(when)

    (record,) = fake.records
    assert record.envelope.available_at == 1_893_456_000.0


def test_dispatch_at_honours_the_timezone_of_an_aware_datetime() -> None:
    when = datetime(2030, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=5)))

    with kashq.testing.fake() as fake:
        kashq.dispatch_at(JobPlainJob(), when)

    assert fake.records[0].envelope.available_at == 1_893_456_000.0


def test_delay_after_dispatch_at_replaces_the_absolute_time() -> None:
    when = datetime(2030, 1, 1, tzinfo=timezone.utc)
    job = JobPlainJob()
    with kashq.testing.fake():
        job.dispatch_at(when)

    env = envelope_of(job.delay(7))

    assert env.available_at == NOW + 7


# -- class definition errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ("    tries = 0\n", "tries"),
        ("    tries = 2.5\n", "tries"),
        ("    backoff = -1\n", "backoff must"),
        ("    backoff = float('nan')\n", "backoff must"),
        ("    backoff = 'soon'\n", "backoff must be seconds"),
        ("    timeout = 0\n", "timeout"),
        ("    timeout = -5\n", "timeout"),
        ("    priority = 'x'\n", "priority"),
        ("    priority = True\n", "priority"),
        ("    queue = ''\n", "queue"),
        ("    queue = 'a,b'\n", "queue"),
        ("    max_deliveries = 0\n", "max_deliveries"),
    ],
)
def test_bad_class_options_raise_job_definition_error(body: str, mentions: str) -> None:
    with pytest.raises(kashq.JobDefinitionError, match=mentions) as info:
        define_job(body)

    assert "BadJob" in str(info.value)


@pytest.mark.parametrize(
    "field", ["delay", "queue", "dispatch", "priority", "handle", "failed", "attempts", "envelope"]
)
def test_payload_field_named_like_an_option_or_method_raises_job_definition_error(
    field: str,
) -> None:
    with pytest.raises(kashq.JobDefinitionError, match=f"payload field\\(s\\) {field} clash"):
        define_job(f"    {field}: int = 1\n")


def test_a_job_class_without_handle_cannot_be_built_so_never_dispatched() -> None:
    class NoHandle(kashq.Job):
        order_id: int

    with pytest.raises(TypeError, match=r"abstract method.*handle"), kashq.testing.fake() as fake:
        NoHandle(order_id=1).dispatch()
    assert fake.records == []


def test_a_base_class_without_handle_shares_options_with_its_subclasses() -> None:
    class EmailJob(kashq.Job):
        queue = "emails"
        tries = 5

    class SendWelcome(EmailJob):
        to: str

        def handle(self) -> None: ...

    env = envelope_of(SendWelcome(to="a@example.com"))

    assert (env.queue, env.max_tries) == ("emails", 5)


def test_job_definition_error_is_also_a_type_error() -> None:
    assert issubclass(kashq.JobDefinitionError, TypeError)
    assert issubclass(kashq.JobDefinitionError, kashq.KashqError)
    with pytest.raises(TypeError):
        define_job("    tries = 0\n")


def test_a_rejected_class_is_not_registered() -> None:
    with pytest.raises(kashq.JobDefinitionError):
        define_job("    timeout = 0\n")

    assert f"{__name__}.BadJob" not in kashq.registry.REGISTRY


def test_a_timedelta_backoff_class_option_is_stored_as_seconds() -> None:
    namespace: dict[str, Any] = {"kashq": kashq, "timedelta": timedelta, "__name__": __name__}
    source = "class BackoffJob(kashq.Job):\n    backoff = timedelta(seconds=5)\n"
    exec(source + "    def handle(self) -> None: ...\n", namespace)

    env = envelope_of(namespace["BackoffJob"]())

    assert decode(env.encode()).backoff_s == 5.0


@pytest.mark.parametrize("backoff", ["'5'", "True", "float('inf')"])
def test_a_backoff_class_option_that_is_not_seconds_is_refused(backoff: str) -> None:
    with pytest.raises(kashq.JobDefinitionError, match="backoff must"):
        define_job(f"    backoff = {backoff}\n")


@pytest.mark.parametrize("timeout", ["float('inf')", "float('nan')"])
def test_a_timeout_that_is_not_finite_is_refused(timeout: str) -> None:
    with pytest.raises(kashq.JobDefinitionError, match="finite"):
        define_job(f"    timeout = {timeout}\n")


# -- fluent errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "apply",
    [
        lambda job: job.with_max_retries(0),
        lambda job: job.with_max_retries(True),
        lambda job: job.with_max_retries(1.5),
        lambda job: job.delay(-1),
        lambda job: job.delay(timedelta(seconds=-1)),
        lambda job: job.delay(float("inf")),
        lambda job: job.with_backoff(-0.5),
        lambda job: job.with_timeout(0),
        lambda job: job.with_timeout(float("nan")),
        lambda job: job.with_priority("high"),
        lambda job: job.on_queue("a,b"),
        lambda job: job.on_queue(""),
        lambda job: job.on_queue("   "),
    ],
)
def test_bad_fluent_values_raise_value_error(apply: Any) -> None:
    job = JobOptionedJob()

    with pytest.raises(ValueError):
        apply(job)

    env = envelope_of(job)  # the bad value was not stored
    assert env.queue == "mail"
    assert env.max_tries == 4
    assert env.available_at == NOW


# -- payload validation ----------------------------------------------------------------


def test_wrong_payload_type_raises_validation_error() -> None:
    with pytest.raises(ValidationError, match="count"):
        JobPayloadJob(count="not a number")  # type: ignore[arg-type]


def test_missing_payload_field_raises_validation_error() -> None:
    with pytest.raises(ValidationError, match="count"):
        JobPayloadJob()  # type: ignore[call-arg]


def test_payload_values_are_coerced() -> None:
    job = JobPayloadJob(count="3")  # type: ignore[arg-type]

    assert job.count == 3
    assert envelope_of(job).payload == {"count": 3, "label": "x"}


def test_attempts_is_zero_and_envelope_none_before_processing() -> None:
    job = JobPayloadJob(count=1)

    assert job.attempts() == 0
    assert job.envelope is None


# -- dispatching through a manager -------------------------------------------------------


def test_dispatch_queues_the_job_ready_on_its_queue_and_returns_its_id() -> None:
    with memory_queue() as q:
        job_id = JobOptionedJob(n=1).dispatch()

        assert isinstance(job_id, str)
        assert q.sizes() == {"mail": QueueSizes(ready=1)}
        reservation = q.driver.reserve(["mail"], lease_s=30)
        assert reservation is not None
        assert reservation.id == job_id
        env = decode(reservation.raw)
        assert env.id == job_id
        assert env.payload == {"n": 1}
        assert env.max_tries == 4


def test_dispatch_without_class_queue_uses_the_configured_default_queue() -> None:
    with memory_queue(queue="jobs") as q:
        JobPlainJob().dispatch()

        assert q.sizes() == {"jobs": QueueSizes(ready=1)}


def test_dispatch_after_queues_the_job_delayed() -> None:
    with memory_queue() as q:
        job_id = JobPlainJob().dispatch_after(10)

        assert q.sizes("default") == {"default": QueueSizes(delayed=1)}
        assert q.driver.reserve(["default"], lease_s=30) is None
        q.clock.advance(10)
        assert q.sizes("default") == {"default": QueueSizes(ready=1)}
        reservation = q.driver.reserve(["default"], lease_s=30)
        assert reservation is not None
        assert reservation.id == job_id


def test_module_dispatch_after_accepts_a_timedelta() -> None:
    with memory_queue() as q:
        kashq.dispatch_after(JobPlainJob(), timedelta(minutes=1))

        assert q.sizes("default")["default"].delayed == 1
        q.clock.advance(59)
        assert q.sizes("default")["default"].delayed == 1
        q.clock.advance(1)
        assert q.sizes("default")["default"].ready == 1


def test_dispatch_many_returns_ids_in_order_and_queues_all() -> None:
    with memory_queue() as q:
        ids = kashq.dispatch_many(
            [JobPlainJob(n=1), JobPlainJob(n=2).on_queue("other"), JobPlainJob(n=3)]
        )

        assert len(ids) == 3
        assert len(set(ids)) == 3
        assert q.sizes() == {"default": QueueSizes(ready=2), "other": QueueSizes(ready=1)}
        taken = []
        for queue in ("default", "other", "default"):
            reservation = q.driver.reserve([queue], lease_s=30)
            assert reservation is not None
            taken.append((reservation.id, decode(reservation.raw).payload["n"]))
        assert taken == [(ids[0], 1), (ids[1], 2), (ids[2], 3)]


def test_dispatch_many_of_nothing_returns_an_empty_list() -> None:
    with memory_queue() as q:
        assert kashq.dispatch_many([]) == []
        assert q.sizes() == {}


def test_module_dispatch_of_a_name_queues_a_named_job_with_options() -> None:
    with memory_queue() as q:
        job_id = kashq.dispatch(
            "send_email",
            {"to": "x"},
            queue="emails",
            priority=5,
            tries=2,
            delay=3,
            metadata={"a": 1},
        )

        assert q.sizes("emails") == {"emails": QueueSizes(delayed=1)}
        assert q.driver.reserve(["emails"], lease_s=30) is None
        q.clock.advance(3)
        reservation = q.driver.reserve(["emails"], lease_s=30)

    assert reservation is not None
    env = decode(reservation.raw)
    assert env.id == job_id
    assert env.type == "send_email"
    assert env.payload == {"to": "x"}
    assert env.queue == "emails"
    assert env.priority == 5
    assert env.max_tries == 2
    assert env.metadata == {"a": "1"}
    assert env.available_at == env.created_at + 3
    assert env.attempts == 0


def test_module_dispatch_of_a_job_instance_applies_keyword_options() -> None:
    with kashq.testing.fake() as fake:
        kashq.dispatch(JobPlainJob(n=4), queue="low", priority=-1, tries=1)

    env = fake.records[0].envelope
    assert env.queue == "low"
    assert env.priority == -1
    assert env.max_tries == 1
    assert env.payload == {"n": 4}


def test_module_dispatch_with_a_job_instance_and_a_payload_raises_type_error() -> None:
    with kashq.testing.fake() as fake, pytest.raises(TypeError, match="payload"):
        kashq.dispatch(JobPlainJob(), {"x": 1})  # type: ignore[arg-type]

    fake.assert_nothing_dispatched()


@pytest.mark.parametrize(("name", "payload"), [("", {}), ("x", [1]), (None, {}), ("x", "payload")])
def test_bad_named_jobs_raise_job_definition_error(name: Any, payload: Any) -> None:
    with pytest.raises(kashq.JobDefinitionError):
        kashq.NamedJob(name, payload)


def test_named_job_envelope_carries_name_payload_and_fluent_options() -> None:
    payload = {"to": "a@example.com"}
    job = kashq.NamedJob("send_email", payload).with_priority(10).on_queue("mail")
    payload["to"] = "changed"  # the job keeps its own copy

    env = envelope_of(job)

    assert env.type == "send_email"
    assert env.payload == {"to": "a@example.com"}
    assert env.priority == 10
    assert env.queue == "mail"
    assert envelope_of(kashq.NamedJob("ping")).payload == {}


# -- the sync connection ----------------------------------------------------------------


@pytest.fixture
def sync_connection() -> Iterator[kashq.QueueManager]:
    SYNC_RAN.clear()
    SYNC_THREADS.clear()
    manager = kashq.configure(connection="sync")
    try:
        yield manager
    finally:
        old = swap_manager(None)
        if old is not None:
            old.close()
        SYNC_RAN.clear()


def test_sync_connection_runs_the_job_immediately_in_the_caller(
    sync_connection: kashq.QueueManager,
) -> None:
    assert kashq.manager() is sync_connection
    assert sync_connection.settings.connection == "sync"

    job_id = JobSyncAppendJob(value=7).dispatch()

    assert SYNC_RAN == [7]
    assert [threading.get_ident()] == SYNC_THREADS
    assert isinstance(job_id, str)
    JobSyncAppendJob(value=8).dispatch()
    assert SYNC_RAN == [7, 8]
    assert sync_connection.connection().sizes(["default"])["default"].total == 0


# -- what cannot be dispatched: one kashq error naming the part ---------------------------


class CarriesBytes(kashq.Job):
    data: bytes

    def handle(self) -> None: ...


class CarriesAnything(kashq.Job):
    order_id: int
    extra: Any = None

    def handle(self) -> None: ...


@pytest.mark.parametrize(
    ("job", "names"),
    [
        (CarriesBytes(data=b"\xff\xfe"), "field 'data'"),
        (CarriesAnything(order_id=1, extra=threading.Lock()), "field 'extra'"),
    ],
)
def test_a_payload_field_that_cannot_be_json_is_a_payload_error_naming_it(
    job: kashq.Job, names: str
) -> None:
    with pytest.raises(kashq.PayloadError) as caught, kashq.testing.fake() as fake:
        job.dispatch()

    assert f"{type(job).__qualname__}: {names} cannot be stored as JSON" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert fake.records == []


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({"to": b"a@example.com"}, "payload['to'] is a bytes"),
        ({"lock": threading.Lock()}, "payload['lock'] is a lock"),
        ({"items": [1, {"price": float("nan")}]}, "payload['items'][1]['price'] is nan"),
        ({"ids": {1: "a"}}, "payload['ids'] has the key 1"),
    ],
)
def test_a_named_payload_that_cannot_be_json_is_a_payload_error_naming_the_part(
    payload: dict[str, Any], names: str
) -> None:
    with pytest.raises(kashq.PayloadError, match=re.escape(names)):
        kashq.NamedJob("send_email", payload)


@pytest.mark.parametrize("thing", [42, None, b"send_email", object()])
def test_dispatching_something_that_is_not_a_job_is_a_kashq_error(thing: object) -> None:
    kashq.configure(connection="memory")
    for attempt in (
        lambda: kashq.dispatch(thing),  # type: ignore[arg-type]
        lambda: kashq.dispatch_many([thing]),  # type: ignore[list-item]
        lambda: kashq.dispatch_after(thing, 5),  # type: ignore[arg-type]
    ):
        with pytest.raises(kashq.JobDefinitionError, match="cannot dispatch"):
            attempt()


def test_with_backoff_error_names_backoff_not_delay() -> None:
    with pytest.raises(ValueError, match=r"^backoff must be seconds or a timedelta"):
        CarriesAnything(order_id=1).with_backoff("soon")  # type: ignore[arg-type]
