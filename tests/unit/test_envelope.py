"""The envelope wire format: encoding, strict decoding, peeking, payload round-trips."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, field_validator

import kashq
from kashq import envelope as envelope_module
from kashq.envelope import WIRE_VERSION, ChainState, Envelope, Failure, decode, peek

NOW = 1_700_000_000.0


def full_envelope(**overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "id": "3f8e5a52-8a47-4c4b-9c55-3f8d0c7b1a20",
        "type": "jobs.SendInvoice",
        "queue": "billing",
        "payload": {"invoice": 42, "lines": [1, 2, 3], "customer": {"name": "Zoë"}},
        "created_at": NOW,
        "available_at": NOW + 12.5,
        "attempts": 2,
        "max_tries": 5,
        "backoff_s": 1.5,
        "timeout_s": 30.0,
        "max_deliveries": 4,
        "priority": -3,
        "metadata": {"trace_id": "abc", "user_id": "123"},
        "failure": Failure(error="boom", exception="RuntimeError: boom\n  at line 1"),
    }
    fields.update(overrides)
    return Envelope(**fields)  # type: ignore[arg-type]


def valid_wire(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "v": 1,
        "id": "job-1",
        "type": "jobs.Thing",
        "queue": "default",
        "payload": {},
        "created_at": NOW,
        "available_at": NOW,
    }
    data.update(overrides)
    return data


# -- encode / decode -----------------------------------------------------------


def test_encode_then_decode_preserves_every_field_including_metadata_and_failure() -> None:
    original = full_envelope()

    decoded = decode(original.encode())

    assert decoded == original
    assert decoded.failure == Failure(error="boom", exception="RuntimeError: boom\n  at line 1")
    assert decoded.metadata == {"trace_id": "abc", "user_id": "123"}
    assert decoded.payload["customer"] == {"name": "Zoë"}


def test_decode_accepts_bytes_as_well_as_text() -> None:
    original = full_envelope()

    assert decode(original.encode().encode("utf-8")) == original


def test_round_trip_without_failure_keeps_failure_none_and_omits_the_key() -> None:
    original = full_envelope(failure=None, max_tries=None, backoff_s=None, timeout_s=None)

    text = original.encode()

    assert "failure" not in json.loads(text)
    decoded = decode(text)
    assert decoded == original
    assert decoded.failure is None
    assert decoded.max_tries is None
    assert decoded.backoff_s is None
    assert decoded.timeout_s is None


def test_encode_is_compact_json_tagged_with_version_1() -> None:
    env = full_envelope(payload={"word": "é"}, failure=None)

    text = env.encode()
    data = json.loads(text)

    assert data["v"] == 1 == WIRE_VERSION
    assert text.startswith('{"v":1,')
    assert " " not in text  # no separator whitespace anywhere
    assert "\n" not in text
    assert "é" in text  # not escaped as \u00e9
    assert data["id"] == env.id
    assert data["type"] == "jobs.SendInvoice"
    assert data["queue"] == "billing"
    assert data["attempts"] == 2
    assert data["max_tries"] == 5
    assert data["backoff_s"] == 1.5
    assert data["timeout_s"] == 30.0
    assert data["max_deliveries"] == 4
    assert data["priority"] == -3
    assert data["created_at"] == NOW
    assert data["available_at"] == NOW + 12.5


def test_decode_fills_defaults_for_absent_optional_fields() -> None:
    env = decode(json.dumps(valid_wire()))

    assert env.attempts == 0
    assert env.max_tries is None
    assert env.backoff_s is None
    assert env.timeout_s is None
    assert env.max_deliveries is None
    assert env.priority == 0
    assert env.metadata == {}
    assert env.failure is None


def test_decode_converts_integer_timestamps_to_floats() -> None:
    env = decode(json.dumps(valid_wire(created_at=10, available_at=20)))

    assert env.created_at == 10.0
    assert isinstance(env.created_at, float)
    assert isinstance(env.available_at, float)


# -- decode errors ---------------------------------------------------------------


def test_decode_rejects_non_json_text_with_readable_message() -> None:
    with pytest.raises(kashq.EnvelopeError, match="not valid JSON"):
        decode(b"this is not json{")


def test_decode_rejects_invalid_utf8_bytes() -> None:
    with pytest.raises(kashq.EnvelopeError, match=r"not valid JSON.*utf-8"):
        decode(b'{"id": "\xff\xfe broken"}')


def test_decode_rejects_a_json_array() -> None:
    with pytest.raises(kashq.EnvelopeError, match="must be a JSON object, got list"):
        decode("[1, 2, 3]")


@pytest.mark.parametrize("raw", ["42", '"text"', "null", "true"])
def test_decode_rejects_other_json_scalars(raw: str) -> None:
    with pytest.raises(kashq.EnvelopeError, match="must be a JSON object"):
        decode(raw)


def test_decode_rejects_missing_id() -> None:
    data = valid_wire()
    del data["id"]

    with pytest.raises(kashq.EnvelopeError) as info:
        decode(json.dumps(data))
    assert str(info.value) == "malformed envelope: missing field 'id'"


@pytest.mark.parametrize("field", ["type", "queue", "payload", "created_at", "available_at"])
def test_decode_rejects_each_missing_required_field(field: str) -> None:
    data = valid_wire()
    del data[field]

    with pytest.raises(kashq.EnvelopeError, match=f"missing field '{field}'"):
        decode(json.dumps(data))


def test_decode_rejects_type_that_is_not_a_string() -> None:
    with pytest.raises(kashq.EnvelopeError, match=r"field 'type' must be str, got int"):
        decode(json.dumps(valid_wire(type=5)))


def test_decode_rejects_payload_that_is_not_an_object() -> None:
    with pytest.raises(kashq.EnvelopeError, match=r"field 'payload' must be dict, got list"):
        decode(json.dumps(valid_wire(payload=[1, 2])))


def test_decode_rejects_bool_where_an_int_is_expected() -> None:
    with pytest.raises(kashq.EnvelopeError, match=r"field 'attempts' must be int, got bool"):
        decode(json.dumps(valid_wire(attempts=True)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", 1.5),
        ("max_tries", "3"),
        ("max_deliveries", False),
        ("created_at", "yesterday"),
        ("available_at", True),
        ("backoff_s", "1"),
        ("timeout_s", [1]),
        ("id", 7),
    ],
)
def test_decode_rejects_wrongly_typed_fields_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(kashq.EnvelopeError, match=f"field '{field}'"):
        decode(json.dumps(valid_wire(**{field: value})))


@pytest.mark.parametrize("field", [name for name, _, _ in envelope_module._FIELD_TYPES])
def test_decode_checks_the_type_of_every_field_of_the_table(field: str) -> None:
    # A bool is no field's type; each must be refused and named (the fast check and the
    # table it stands for cover the same fields).
    with pytest.raises(kashq.EnvelopeError, match=f"field '{field}' must be"):
        decode(json.dumps(valid_wire(**{field: True})))


def test_decode_rejects_metadata_with_non_string_values() -> None:
    with pytest.raises(kashq.EnvelopeError, match="'metadata' must map strings to strings"):
        decode(json.dumps(valid_wire(metadata={"user_id": 123})))


def test_decode_rejects_metadata_that_is_not_an_object() -> None:
    with pytest.raises(kashq.EnvelopeError, match="field 'metadata' must be dict"):
        decode(json.dumps(valid_wire(metadata=["a"])))


def test_decode_rejects_malformed_failure() -> None:
    with pytest.raises(kashq.EnvelopeError, match="'failure' must be an object"):
        decode(json.dumps(valid_wire(failure="boom")))
    with pytest.raises(kashq.EnvelopeError, match="missing field 'exception'"):
        decode(json.dumps(valid_wire(failure={"error": "boom"})))


def test_a_chain_round_trips_and_is_written_only_when_set() -> None:
    step = valid_wire(id="job-2")
    chain = ChainState("job-1", (step,), (valid_wire(id="job-9"),), prev="job-0", done=True)
    env = full_envelope(chain=chain)
    assert decode(env.encode()) == env
    assert decode(full_envelope(chain=ChainState("job-1")).encode()).chain == ChainState("job-1")
    assert '"chain"' not in full_envelope().encode()


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ("job-1", "'chain' must be an object"),
        ({"next": []}, "missing field 'id'"),
        ({"id": 1, "next": []}, "string 'id'"),
        ({"id": "c", "next": [], "done": "yes"}, "boolean 'done'"),
        ({"id": "c", "next": ["job"]}, "list of envelope objects 'next'"),
        ({"id": "c", "next": [], "catch": {}}, "list of envelope objects 'catch'"),
    ],
)
def test_decode_rejects_a_malformed_chain(chain: object, message: str) -> None:
    with pytest.raises(kashq.EnvelopeError, match=message):
        decode(json.dumps(valid_wire(chain=chain)))


def test_decode_rejects_unsupported_version() -> None:
    with pytest.raises(kashq.EnvelopeError, match="unsupported envelope version 2"):
        decode(json.dumps(valid_wire(v=2)))


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_decode_accepts_only_the_integer_version_1(version: object) -> None:
    with pytest.raises(kashq.EnvelopeError, match="unsupported envelope version"):
        decode(json.dumps(valid_wire(v=version)))


def test_decode_errors_are_kashq_errors() -> None:
    with pytest.raises(kashq.KashqError):
        decode("{")


# -- peek ------------------------------------------------------------------------


def test_peek_returns_id_and_type_of_a_valid_envelope() -> None:
    env = full_envelope()

    assert peek(env.encode()) == (env.id, "jobs.SendInvoice")
    assert peek(env.encode().encode()) == (env.id, "jobs.SendInvoice")


def test_peek_is_best_effort_on_envelopes_that_do_not_decode() -> None:
    raw = json.dumps({"v": 99, "id": "job-9", "type": "jobs.Broken", "payload": "nope"})

    with pytest.raises(kashq.EnvelopeError):
        decode(raw)
    assert peek(raw) == ("job-9", "jobs.Broken")


def test_peek_drops_fields_that_are_not_strings() -> None:
    assert peek(json.dumps({"id": 5, "type": "jobs.X"})) == (None, "jobs.X")
    assert peek(json.dumps({"id": "abc", "type": ["jobs.X"]})) == ("abc", None)


@pytest.mark.parametrize(
    "raw",
    [b"garbage", "not json at all", "[1, 2]", "42", b'{"id": "\xff"}', "", None, 12],
)
def test_peek_returns_none_none_for_garbage(raw: object) -> None:
    assert peek(raw) == (None, None)  # type: ignore[arg-type]


# -- payload_as ----------------------------------------------------------------------


class EmailPayload(BaseModel):
    to: str
    retries: int = 0


def test_payload_as_validates_into_the_model() -> None:
    env = full_envelope(payload={"to": "a@example.com", "retries": "2"})

    model = env.payload_as(EmailPayload)

    assert model == EmailPayload(to="a@example.com", retries=2)


def test_payload_as_raises_payload_error_naming_the_bad_field() -> None:
    env = full_envelope(payload={"retries": "many"})

    with pytest.raises(kashq.PayloadError) as info:
        env.payload_as(EmailPayload)

    message = str(info.value)
    assert "EmailPayload" in message
    assert "to: Field required" in message
    assert "retries:" in message


class PositivePayload(BaseModel):
    count: int

    @field_validator("count")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("count must be positive")
        return value


def test_payload_error_from_a_validator_says_its_words_without_pydantic_prefix() -> None:
    env = full_envelope(payload={"count": -1})

    with pytest.raises(kashq.PayloadError) as info:
        env.payload_as(PositivePayload)

    assert (
        str(info.value) == "payload does not match PositivePayload: count: count must be positive"
    )


# -- property: a Job's payload survives the wire ------------------------------------------


class Colour(str, Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Level(IntEnum):
    LOW = 1
    MID = 5
    HIGH = 10


class Address(BaseModel):
    street: str
    number: int
    tags: list[str]


class EnvelopeRichPayloadJob(kashq.Job):
    moment: datetime
    day: date
    ident: UUID
    amount: Decimal
    colour: Colour
    level: Level
    address: Address
    numbers: list[int]
    labels: dict[str, str]
    maybe: int | None
    ratio: float
    name: str
    flag: bool

    def handle(self) -> None:
        pass


rich_jobs = st.builds(
    EnvelopeRichPayloadJob,
    moment=st.datetimes(
        timezones=st.sampled_from([None, timezone.utc, timezone(timedelta(hours=5))])
    ),
    day=st.dates(),
    ident=st.uuids(),
    amount=st.decimals(allow_nan=False, allow_infinity=False),
    colour=st.sampled_from(Colour),
    level=st.sampled_from(Level),
    address=st.builds(
        Address, street=st.text(), number=st.integers(), tags=st.lists(st.text(), max_size=3)
    ),
    numbers=st.lists(st.integers(), max_size=5),
    labels=st.dictionaries(st.text(), st.text(), max_size=4),
    maybe=st.none() | st.integers(),
    ratio=st.floats(allow_nan=False, allow_infinity=False),
    name=st.text(),
    flag=st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(job=rich_jobs, now=st.floats(min_value=0, max_value=4_000_000_000))
def test_job_payload_survives_envelope_encode_and_decode(
    job: EnvelopeRichPayloadJob, now: float
) -> None:
    envelope = job.to_envelope(default_queue="default", now=now)

    decoded = decode(envelope.encode())

    assert decoded == envelope
    assert decoded.type == EnvelopeRichPayloadJob.__kashq_name__
    rebuilt = EnvelopeRichPayloadJob.model_validate(decoded.payload)
    assert rebuilt == job
    # aware stays aware, naive stays naive, and the offset is kept
    assert rebuilt.moment.utcoffset() == job.moment.utcoffset()
    assert type(rebuilt.colour) is Colour
    assert type(rebuilt.level) is Level
    assert math.isfinite(rebuilt.ratio)
