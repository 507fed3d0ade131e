"""Alerts for jobs that failed for good: Slack, a signed JSON webhook, the log.

An :class:`Alert` describes one permanent failure. An :class:`Alerter` sends it
somewhere (it may be slow and may raise). Workers never call alerters
themselves: an :class:`AlertDispatcher` takes alerts from a worker listener
into a bounded queue and delivers them from background threads, one lane per
alerter, every send bounded by a timeout, so a dead Slack or a hung webhook
never slows a job down or stops the other alerters.

Only ``FAILED`` events raise an alert. ``PARKED`` (failed for good while the
failed-job store was down) does not: the parked job comes back, is recorded,
and then emits ``FAILED``, so alerting on both would say it twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from kashq._version import __version__
from kashq.config import Settings
from kashq.exceptions import ConfigError, KashqError
from kashq.failed.base import FailedJob, utc_from_timestamp
from kashq.jobevents import EventKind, JobEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Kashq-Signature"
TIMESTAMP_HEADER = "X-Kashq-Timestamp"
ERROR_LOG_INTERVAL_S = 60.0  # an alerter's errors are logged at most once per interval
_MAX_ERROR_CHARS = 2800  # Slack rejects section text over 3000 characters


class AlertError(KashqError):
    """An alerter could not deliver an alert (HTTP error, refused, timed out)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One job that failed for good, as alerters see it (``failed_at`` is timezone-aware)."""

    job_id: str
    job_type: str
    queue: str
    connection: str
    error: str
    attempts: int
    failed_at: datetime
    host: str

    @classmethod
    def from_failed_job(cls, job: FailedJob) -> Alert:
        """The alert for a record of the failed-job store."""
        return cls(
            job_id=job.uuid,
            job_type=job.job_type,
            queue=job.queue,
            connection=job.connection,
            error=job.error,
            attempts=job.attempts,
            failed_at=job.failed_at,
            host=job.host,
        )

    @classmethod
    def from_event(cls, event: JobEvent, *, connection: str = "", host: str | None = None) -> Alert:
        """The alert for a worker's ``FAILED`` event (events do not carry the connection)."""
        return cls(
            job_id=event.job_id,
            job_type=event.job_type,
            queue=event.queue,
            connection=connection,
            error=event.error or "",
            attempts=event.attempt,
            failed_at=utc_from_timestamp(event.at or time.time()),
            host=host or socket.gethostname(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data (``failed_at`` in ISO 8601)."""
        return {
            "job_id": self.job_id,
            "job_type": self.job_type,
            "queue": self.queue,
            "connection": self.connection,
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat(),
            "host": self.host,
        }

    def summary(self) -> str:
        """One line: what failed, where, after how many attempts, and why."""
        return (
            f"job {self.job_type} {self.job_id} on queue {self.queue!r} failed for good "
            f"after {self.attempts} attempt(s): {self.error}"
        )


class Alerter(Protocol):
    """Something that delivers alerts; ``send`` may be slow and may raise."""

    def send(self, alert: Alert) -> None:
        """Deliver one alert."""
        ...


# --------------------------------------------------------------------------- HTTP alerters


def _check_url(url: str, what: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{what} must be an http:// or https:// URL")
    return url


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: webhook paths hold secrets and never reach a log."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def post_json(
    url: str, body: bytes, timeout_s: float, headers: dict[str, str] | None = None
) -> None:
    """POST ``body`` as JSON; raise :class:`AlertError` unless the answer is 2xx."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"kashq/{__version__}",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise AlertError(f"POST to {_origin(url)} answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise AlertError(f"POST to {_origin(url)} failed: {exc.reason}") from None
    except OSError as exc:  # a timeout while reading the answer, a reset connection
        raise AlertError(f"POST to {_origin(url)} failed: {exc or type(exc).__name__}") from None


class SlackAlerter:
    """Posts alerts to a Slack incoming webhook: a text line plus blocks with the fields."""

    def __init__(
        self, webhook_url: str, channel: str | None = None, *, timeout_s: float = 5
    ) -> None:
        self.webhook_url = _check_url(webhook_url, "the Slack webhook URL")
        self.channel = channel
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"SlackAlerter({_origin(self.webhook_url)!r})"

    def payload(self, alert: Alert) -> dict[str, Any]:
        """The JSON message Slack receives for ``alert``."""
        error = _slack_escape(alert.error[:_MAX_ERROR_CHARS]) or "(no message)"
        fields = [
            ("Job type", f"`{_slack_escape(alert.job_type)}`"),
            ("Queue", f"`{_slack_escape(alert.queue)}`"),
            ("Attempts", str(alert.attempts)),
            ("Connection", _slack_escape(alert.connection) or "-"),
            ("Host", _slack_escape(alert.host)),
            ("Failed at", alert.failed_at.isoformat(timespec="seconds")),
        ]
        message: dict[str, Any] = {
            "text": f":rotating_light: kashq: {_slack_escape(alert.summary())}",
            "blocks": [
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": "kashq: job failed for good"},
                },
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
                },
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{error}```"}},
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"Job id `{alert.job_id}`"}],
                },
            ],
        }
        if self.channel:
            message["channel"] = self.channel
        return message

    def send(self, alert: Alert) -> None:
        """POST the message; raises :class:`AlertError` on failure."""
        body = json.dumps(self.payload(alert)).encode()
        post_json(self.webhook_url, body, self.timeout_s)


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn needs only these three characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Kashq-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookAlerter:
    """POSTs each alert as JSON; with a secret, signs the body (``X-Kashq-Signature``).

    The body is the alert's fields plus ``"event": "job.failed"`` and
    ``"sent_at"`` (Unix seconds, equal to the ``X-Kashq-Timestamp`` header), so
    the signature covers the send time and a receiver can refuse replays.
    """

    def __init__(self, url: str, *, secret: str | None = None, timeout_s: float = 5) -> None:
        self.url = _check_url(url, "the alert webhook URL")
        self.secret = secret
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"WebhookAlerter({_origin(self.url)!r})"

    def send(self, alert: Alert) -> None:
        """POST the alert; raises :class:`AlertError` on failure."""
        sent_at = int(time.time())
        body = json.dumps({"event": "job.failed", **alert.to_dict(), "sent_at": sent_at}).encode()
        headers = {}
        if self.secret:
            headers = {TIMESTAMP_HEADER: str(sent_at), SIGNATURE_HEADER: sign(self.secret, body)}
        post_json(self.url, body, self.timeout_s, headers)


class LogAlerter:
    """Logs one warning line per alert (to ``kashq.alerts`` unless a logger is given)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def send(self, alert: Alert) -> None:
        """Log the alert's summary as a warning."""
        self.logger.warning("kashq alert: %s", alert.summary())


# --------------------------------------------------------------------------- delivery


class _Throttled:
    """Logs a warning at most once per interval, counting what it held back."""

    def __init__(self, interval_s: float = ERROR_LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._last = float("-inf")
        self._held = 0
        self._lock = threading.Lock()

    def warning(self, message: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._interval_s:
                self._held += 1
                return
            held, self._held, self._last = self._held, 0, now
        if held:
            message += f" ({held} more like it in the last {self._interval_s:g}s not logged)"
        log.warning(message, *args)


def _start_send(
    alerter: Alerter, alert: Alert, report: Callable[..., None]
) -> tuple[threading.Thread, list[bool]]:
    """Run ``alerter.send(alert)`` in a daemon thread; the list gets True once it succeeded."""
    succeeded: list[bool] = []

    def run() -> None:
        try:
            alerter.send(alert)
        except Exception as exc:
            report("alerter %r failed for job %s: %s", alerter, alert.job_id, exc)
        else:
            succeeded.append(True)

    thread = threading.Thread(target=run, name="kashq-alert-send", daemon=True)
    thread.start()
    return thread, succeeded


def _send_within(
    alerter: Alerter, alert: Alert, timeout_s: float, report: Callable[..., None]
) -> tuple[bool, threading.Thread | None]:
    """``(succeeded, thread still running at the timeout or None)``; never raises."""
    thread, succeeded = _start_send(alerter, alert, report)
    thread.join(timeout_s)
    if thread.is_alive():
        report("alerter %r did not finish within %gs (job %s)", alerter, timeout_s, alert.job_id)
        return False, thread
    return bool(succeeded), None


def deliver(alerter: Alerter, alert: Alert, timeout_s: float) -> bool:
    """Send ``alert`` through ``alerter``, waiting at most ``timeout_s``; never raises.

    A failure or a timeout is logged and returns False; a send still running
    at the timeout is left to finish in its daemon thread.
    """
    return _send_within(alerter, alert, timeout_s, log.warning)[0]


class _Lane:
    """One alerter's bounded queue and the daemon thread that drains it.

    Each send runs in its own thread joined with the timeout, so a hung
    alerter costs its lane one timeout per alert and never the other lanes.
    While an earlier send is still stuck, new alerts for this alerter are
    dropped (logged) rather than piling up threads.
    """

    def __init__(self, alerter: Alerter, timeout_s: float, max_pending: int) -> None:
        self.alerter = alerter
        self.timeout_s = timeout_s
        self.pending: queue.Queue[Alert | None] = queue.Queue(max_pending)
        self.errors = _Throttled()
        self.drops = _Throttled()
        self.thread = threading.Thread(target=self._run, name="kashq-alerts", daemon=True)
        self.thread.start()

    def offer(self, alert: Alert) -> bool:
        try:
            self.pending.put_nowait(alert)
        except queue.Full:
            self.drops.warning(
                "alert queue of %r is full (%d pending); dropped the alert for job %s",
                self.alerter,
                self.pending.maxsize,
                alert.job_id,
            )
            return False
        return True

    def _run(self) -> None:
        busy: threading.Thread | None = None
        while (alert := self.pending.get()) is not None:
            if busy is not None:
                busy.join(self.timeout_s)  # the previous send overran: give it one more timeout
                if busy.is_alive():
                    self.errors.warning(
                        "alerter %r is still stuck on an earlier alert; dropped the alert for "
                        "job %s",
                        self.alerter,
                        alert.job_id,
                    )
                    continue
            _, busy = _send_within(self.alerter, alert, self.timeout_s, self.errors.warning)


class AlertDispatcher:
    """Delivers alerts off the job's critical path; see the module docstring.

    ``listener`` is a worker listener (``worker.add_listener(d.listener)``)
    turning every ``FAILED`` event into an alert tagged with ``connection``.
    ``close`` delivers what is queued (bounded by its timeout) and stops.
    """

    def __init__(
        self,
        alerters: Sequence[Alerter],
        *,
        timeout_s: float = 5.0,
        connection: str = "",
        max_pending: int = 1000,
    ) -> None:
        self.timeout_s = timeout_s
        self.connection = connection
        self.host = socket.gethostname()  # once: the listener runs on the worker's thread
        self._lanes = [_Lane(alerter, timeout_s, max_pending) for alerter in alerters]
        self._closed = False

    @property
    def alerters(self) -> list[Alerter]:
        """The alerters this dispatcher delivers to."""
        return [lane.alerter for lane in self._lanes]

    def submit(self, alert: Alert) -> bool:
        """Queue ``alert`` for every alerter; False if it was dropped for any (logged)."""
        if self._closed:
            log.warning(
                "alert for job %s arrived after the dispatcher closed; dropped", alert.job_id
            )
            return False
        return all([lane.offer(alert) for lane in self._lanes])

    def listener(self, event: JobEvent) -> None:
        """Worker listener: queue an alert for every job that failed for good."""
        if event.kind is EventKind.FAILED:
            self.submit(Alert.from_event(event, connection=self.connection, host=self.host))

    def close(self, timeout_s: float | None = None) -> bool:
        """Deliver queued alerts for up to ``timeout_s`` (default: a few sends), then stop.

        Returns True if everything queued was delivered or attempted in time.
        """
        self._closed = True
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else 3 * self.timeout_s)
        for lane in self._lanes:
            with contextlib.suppress(queue.Full):  # a stuck lane dies with the process
                lane.pending.put(None, timeout=max(0.0, deadline - time.monotonic()))
        flushed = True
        for lane in self._lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
            if lane.thread.is_alive():
                flushed = False
                log.warning(
                    "alerter %r still had about %d alert(s) to send at close; giving up on them",
                    lane.alerter,
                    lane.pending.qsize(),
                )
        return flushed

    def __enter__(self) -> AlertDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- settings


def alerters_from_settings(settings: Settings) -> list[Alerter]:
    """The alerters the settings configure: Slack and/or the JSON webhook.

    No :class:`LogAlerter`: the worker already logs one warning per job that
    fails for good, and an always-present alerter would put a dispatcher
    thread into every worker that has nothing to alert.
    """
    alerters: list[Alerter] = []
    timeout_s = settings.alert_timeout
    if settings.slack_webhook_url:
        alerters.append(
            SlackAlerter(settings.slack_webhook_url, settings.slack_channel, timeout_s=timeout_s)
        )
    if settings.alert_webhook_url:
        secret = settings.alert_webhook_secret
        alerters.append(
            WebhookAlerter(settings.alert_webhook_url, secret=secret, timeout_s=timeout_s)
        )
    return alerters


def dispatcher_from_settings(
    settings: Settings, *, connection: str | None = None
) -> AlertDispatcher | None:
    """A started dispatcher for the configured alerters, or None when there are none."""
    alerters = alerters_from_settings(settings)
    if not alerters:
        return None
    return AlertDispatcher(
        alerters,
        timeout_s=settings.alert_timeout,
        connection=connection or settings.connection,
    )
