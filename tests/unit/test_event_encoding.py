"""An event's stored JSON: what the recorder writes is what readers get back."""

from __future__ import annotations

import json

import pytest

from kashq.events.base import Event, encode_event


@pytest.mark.parametrize(
    "event",
    [
        Event("started", "id-1", "app.Mail", "emails", 1, 1_800_000_000.25, "web-1", 11, {}),
        Event("completed", "id-2", "app.Mail", "emails", 1, 1.5, "web-1", 11, {"duration_ms": 0.3}),
        Event("failed", "id-3", 'odd "type"', "q\\x", 3, 2.0, "höst", 12, {"error": "boom\n"}),
        Event("released", "id-4", "app.Mail", "emails", 2, 3.0, "web-1", 11, {"delay_s": 30}),
    ],
)
def test_an_encoded_event_decodes_to_itself(event):
    text = event.encode()
    json.loads(text)  # valid JSON, whatever the values hold
    assert Event.decode(text) == event


def test_events_that_share_their_type_and_queue_keep_their_own_host_and_pid():
    """The repeating fields are encoded once and remembered; the process is part of that."""
    fields = ("started", "id-1", "app.Mail", "emails", 1, 1.0)
    one = Event.decode(encode_event(*fields, "web-1", 100, {}))
    other = Event.decode(encode_event(*fields, "web-2", 200, {}))
    assert (one.host, one.pid) == ("web-1", 100)
    assert (other.host, other.pid) == ("web-2", 200)


def test_events_of_other_types_queues_and_jobs_are_not_mixed_up():
    a = Event.decode(encode_event("started", "id-1", "app.A", "q1", 1, 1.0, "h", 1, {}))
    b = Event.decode(encode_event("completed", "id-2", "app.B", "q2", 2, 2.0, "h", 1, {}))
    assert (a.type, a.job_id, a.job_type, a.queue) == ("started", "id-1", "app.A", "q1")
    assert (b.type, b.job_id, b.job_type, b.queue) == ("completed", "id-2", "app.B", "q2")
    assert (a.attempt, b.attempt) == (1, 2)
