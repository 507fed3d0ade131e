"""Alerters against real HTTP servers on 127.0.0.1, and alerts from a real worker."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from datetime import datetime, timezone

import pytest

from kashq import EventKind, Job, JobEvent, Outcome, Settings, Worker, WorkerOptions
from kashq.alerts import (
    Alert,
    AlertDispatcher,
    AlertError,
    LogAlerter,
    SlackAlerter,
    WebhookAlerter,
    alerters_from_settings,
    dispatcher_from_settings,
)
from kashq.drivers.memory import MemoryDriver
from kashq.failed.memory import MemoryFailedJobStore
from tests.support.http import closed_url, http_server

SECRET = "s3cret-key"
FAILED_AT = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


def alert(job_id: str = "0b8a6c1e-1111-4222-8333-444455556666") -> Alert:
    return Alert(
        job_id=job_id,
        job_type="app.jobs.SendInvoice",
        queue="billing",
        connection="redis",
        error="RuntimeError: card <declined> & retried",
        attempts=3,
        failed_at=FAILED_AT,
        host="worker-7",
    )


class AlwaysFails(Job):
    tries = 2
    backoff = 0

    def handle(self) -> None:
        raise RuntimeError("payment gateway said no")


class Blocking:
    """An alerter that blocks until released, to fill a dispatcher's queue."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def send(self, alert: Alert) -> None:
        self.started.set()
        self.release.wait(30)


# --------------------------------------------------------------------------- alerters


def test_slack_alerter_posts_text_and_blocks_with_the_job_fields():
    with http_server() as server:
        SlackAlerter(server.url + "/services/T0/B0/xyz", "#ops", timeout_s=5).send(alert())
        (request,) = server.wait_for(1)

    assert request.path == "/services/T0/B0/xyz"
    assert request.headers["content-type"] == "application/json"
    message = request.json()
    assert message["channel"] == "#ops"
    assert "app.jobs.SendInvoice" in message["text"]
    assert "billing" in message["text"]
    blocks = str(message["blocks"])
    for expected in ("app.jobs.SendInvoice", "billing", "*Attempts*\\n3", "0b8a6c1e-1111"):
        assert expected in blocks
    assert "card &lt;declined&gt; &amp; retried" in blocks, "mrkdwn special characters escaped"


def test_webhook_alerter_signs_the_body_with_hmac_sha256_and_a_timestamp():
    with http_server() as server:
        WebhookAlerter(server.url + "/alerts", secret=SECRET, timeout_s=5).send(alert())
        (request,) = server.wait_for(1)

    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-kashq-signature"] == expected
    body = request.json()
    assert request.headers["x-kashq-timestamp"] == str(body["sent_at"])
    assert abs(body["sent_at"] - time.time()) < 300
    assert body["event"] == "job.failed"
    assert {k: body[k] for k in ("job_id", "job_type", "queue", "connection", "attempts")} == {
        "job_id": "0b8a6c1e-1111-4222-8333-444455556666",
        "job_type": "app.jobs.SendInvoice",
        "queue": "billing",
        "connection": "redis",
        "attempts": 3,
    }
    assert body["failed_at"] == "2024-05-01T12:30:00+00:00"
    assert (body["host"], body["error"]) == ("worker-7", "RuntimeError: card <declined> & retried")


def test_webhook_alerter_without_a_secret_sends_no_signature():
    with http_server() as server:
        WebhookAlerter(server.url, timeout_s=5).send(alert())
        (request,) = server.wait_for(1)
    assert "x-kashq-signature" not in request.headers
    assert request.json()["job_id"] == alert().job_id


def test_http_500_refused_and_hung_endpoints_raise_alert_error_without_the_secret_path():
    with http_server(status=500) as broken, http_server(hang_s=30) as hung:
        cases = [
            (broken.url + "/secret-token-a", "HTTP 500"),
            (closed_url("/secret-token-b"), "failed"),
            (hung.url + "/secret-token-c", "failed"),
        ]
        for url, expected in cases:
            with pytest.raises(AlertError, match=expected) as raised:
                WebhookAlerter(url, timeout_s=0.5).send(alert())
            assert "secret-token" not in str(raised.value)


def test_log_alerter_logs_one_warning_line(caplog):
    caplog.set_level(logging.WARNING, logger="kashq.alerts")
    LogAlerter().send(alert())
    (record,) = [r for r in caplog.records if r.name == "kashq.alerts"]
    assert record.levelno == logging.WARNING
    assert "app.jobs.SendInvoice" in record.getMessage()
    assert "failed for good after 3 attempt(s)" in record.getMessage()


# --------------------------------------------------------------------------- the dispatcher


def test_dispatcher_keeps_delivering_while_other_alerters_fail_hang_or_are_refused(caplog):
    caplog.set_level(logging.WARNING, logger="kashq.alerts")
    with (
        http_server() as good,
        http_server(status=500) as broken,
        http_server(hang_s=30) as hung,
    ):
        alerters = [
            WebhookAlerter(hung.url + "/hung", timeout_s=0.5),
            WebhookAlerter(broken.url + "/broken", timeout_s=0.5),
            WebhookAlerter(closed_url("/refused"), timeout_s=0.5),
            WebhookAlerter(good.url + "/good", timeout_s=0.5),
        ]
        dispatcher = AlertDispatcher(alerters, timeout_s=0.5)
        for n in range(3):
            dispatcher.submit(alert(f"job-{n}"))

        delivered = good.wait_for(3, timeout_s=20)
        assert [r.json()["job_id"] for r in delivered] == ["job-0", "job-1", "job-2"]
        dispatcher.close(timeout_s=20)

    messages = [r.getMessage() for r in caplog.records if r.name == "kashq.alerts"]
    broken_lines = [m for m in messages if broken.url in m]
    assert len(broken_lines) == 1, "three failures, one log line per alerter per minute"
    assert "HTTP 500" in broken_lines[0]
    assert any("Connection refused" in m or "refused" in m.lower() for m in messages)
    assert any(hung.url in m for m in messages), "the hung endpoint is reported"
    assert not any("/hung" in m or "/broken" in m or "/refused" in m for m in messages)


def test_a_full_dispatcher_queue_drops_the_alert_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="kashq.alerts")
    blocking = Blocking()
    dispatcher = AlertDispatcher([blocking], timeout_s=30, max_pending=1)
    try:
        assert dispatcher.submit(alert("first"))
        assert blocking.started.wait(10), "the lane took the first alert"
        assert dispatcher.submit(alert("second")), "one pending alert fits"
        assert not dispatcher.submit(alert("third"))
    finally:
        blocking.release.set()
        dispatcher.close(timeout_s=20)
    assert any("full" in r.getMessage() and "third" in r.getMessage() for r in caplog.records)


def test_close_delivers_every_queued_alert():
    with http_server() as server:
        dispatcher = AlertDispatcher([WebhookAlerter(server.url, timeout_s=5)], timeout_s=5)
        for n in range(5):
            dispatcher.submit(alert(f"job-{n}"))
        assert dispatcher.close(timeout_s=20)
        assert [r.json()["job_id"] for r in server.requests] == [f"job-{n}" for n in range(5)]
        assert not dispatcher.submit(alert("late")), "a closed dispatcher takes no more"


def test_only_failed_events_raise_alerts_not_parked_or_retried():
    with http_server() as server:
        dispatcher = AlertDispatcher([WebhookAlerter(server.url, timeout_s=5)], timeout_s=5)
        for kind in (EventKind.PARKED, EventKind.RETRIED, EventKind.COMPLETED):
            dispatcher.listener(JobEvent(kind, None, None, "app.Job", "default", attempt=1))
        dispatcher.close(timeout_s=20)
        assert server.requests == []


# --------------------------------------------------------------------------- a real worker


def failing_worker(dispatcher: AlertDispatcher) -> tuple[Worker, MemoryDriver, str]:
    driver = MemoryDriver()
    options = WorkerOptions(connection="memory", queues=("billing",), timeout_s=None)
    worker = Worker(driver, MemoryFailedJobStore(), options, listeners=[dispatcher.listener])
    envelope = AlwaysFails().to_envelope(default_queue="billing", now=time.time())
    driver.push(envelope)
    return worker, driver, envelope.id


def test_a_job_failing_for_good_in_a_worker_sends_exactly_one_alert():
    with http_server() as server:
        dispatcher = AlertDispatcher(
            [WebhookAlerter(server.url, secret=SECRET, timeout_s=5)],
            timeout_s=5,
            connection="memory",
        )
        worker, _, job_id = failing_worker(dispatcher)

        assert worker.run_next() is Outcome.RETRIED
        assert worker.run_next(wait_s=5) is Outcome.FAILED
        assert worker.failed_store.count() == 1
        dispatcher.close(timeout_s=20)

        (request,) = server.requests
    body = request.json()
    assert body["job_id"] == job_id
    assert body["job_type"] == f"{__name__}.AlwaysFails"
    assert (body["queue"], body["connection"], body["attempts"]) == ("billing", "memory", 2)
    assert "payment gateway said no" in body["error"]
    assert datetime.fromisoformat(body["failed_at"]).tzinfo is not None


def test_a_hanging_alerter_does_not_delay_the_worker():
    with http_server(hang_s=60) as hung:
        dispatcher = AlertDispatcher([WebhookAlerter(hung.url, timeout_s=60)], timeout_s=60)
        worker, _, _ = failing_worker(dispatcher)
        worker.run_next()

        started = time.monotonic()
        assert worker.run_next(wait_s=5) is Outcome.FAILED
        took_s = time.monotonic() - started

        hung.wait_for(1, timeout_s=20)  # the alert really is stuck in the endpoint
        assert took_s < 30, f"run_next took {took_s:.1f}s while the alerter hangs for 60s"
        assert not dispatcher.close(timeout_s=0.2), "the hung send is still running"


# --------------------------------------------------------------------------- settings


def test_no_configured_alerter_means_no_dispatcher():
    settings = Settings(slack_webhook_url=None, alert_webhook_url=None)
    assert alerters_from_settings(settings) == []
    assert dispatcher_from_settings(settings) is None


def test_settings_configure_slack_and_a_signed_webhook():
    settings = Settings(
        connection="redis",
        slack_webhook_url="https://hooks.slack.com/services/T/B/x",
        slack_channel="#alerts",
        alert_webhook_url="https://ops.example.com/kashq",
        alert_webhook_secret=SECRET,
        alert_timeout=2.5,
    )
    slack, webhook = alerters_from_settings(settings)
    assert isinstance(slack, SlackAlerter) and isinstance(webhook, WebhookAlerter)
    assert (slack.channel, slack.timeout_s) == ("#alerts", 2.5)
    assert (webhook.secret, webhook.timeout_s) == (SECRET, 2.5)
    dispatcher = dispatcher_from_settings(settings)
    assert dispatcher is not None
    try:
        assert (dispatcher.connection, dispatcher.timeout_s) == ("redis", 2.5)
    finally:
        dispatcher.close(timeout_s=1)
