"""kashq's exception tree.

Everything kashq raises on purpose derives from :class:`KashqError`, so callers
can catch one type. Errors from third-party libraries (redis-py, SQLAlchemy,
pydantic) are translated into these at the boundary where they occur.

    KashqError
    ├── ConfigError            a setting has a bad value (message names it)
    ├── RegistryError          two job types claim one name, or a bad name
    ├── JobDefinitionError     a Job subclass is declared wrongly (also a TypeError)
    ├── EnvelopeError          bytes from a queue are not a valid envelope
    ├── UnknownJobType         an envelope names a type nobody registered
    ├── PayloadError           a payload fails its job class's validation
    ├── JobTimeout             an attempt ran past its timeout
    ├── WorkerLost             a job's worker died while running it
    ├── FailJob                raised by a job to fail at once, without retries
    ├── JobCancelled           the running job was cancelled (kashq.cancel): it stops here
    ├── DriverError            the queue backend failed an operation
    ├── FailedStoreError       the failed-job store could not be written/read
    └── ImportFailed           a job module given to a worker could not be imported

The feature modules add their own, in the same tree:

    KashqError
    ├── LockNotAcquired        kashq.locks: the lock is held by someone else
    ├── ReleaseJob             kashq.middleware: put the job back without running it
    ├── ScheduleError          kashq.scheduler: a bad schedule or cron expression
    ├── AlertError             kashq.alerts: an alerter could not deliver
    ├── DeadLetterError        kashq.dlq: a failed job cannot be retried or found
    │   └── RetryError         some of a batch could not be retried
    ├── WebhookError           kashq.webhooks: a webhook route is declared wrongly
    │   └── InvalidSignature   a request's signature is missing, wrong or stale (HTTP 401)
    └── DriverError
        └── EventStoreError    kashq.events: the event store failed an operation
"""

from __future__ import annotations


class KashqError(Exception):
    """Base class of every error kashq raises on purpose."""


class ConfigError(KashqError):
    """A configuration value is invalid; the message names the setting."""


class RegistryError(KashqError):
    """A job type name is invalid or already taken by something else."""


class JobDefinitionError(KashqError, TypeError):
    """A Job subclass declares a bad option or a payload field that clashes."""


class EnvelopeError(KashqError):
    """Raw queue data could not be decoded into an envelope."""


class UnknownJobType(KashqError):
    """An envelope names a job type that is not in the registry."""

    def __init__(self, type_name: str) -> None:
        super().__init__(
            f"unknown job type {type_name!r}: no Job class or handler is registered under "
            "that name (is the module that defines it listed in KASHQ_IMPORTS / --import?)"
        )
        self.type_name = type_name


class PayloadError(KashqError):
    """A payload does not validate against its job class."""


class JobTimeout(KashqError):
    """An attempt ran longer than its timeout and was stopped."""

    def __init__(self, timeout_s: float, *, killed: bool = False) -> None:
        how = "; its worker process was killed" if killed else ""
        super().__init__(f"job exceeded its timeout of {timeout_s:g}s{how}")
        self.timeout_s = timeout_s


class DriverError(KashqError):
    """The queue backend could not complete an operation."""


class FailedStoreError(KashqError):
    """The failed-job store could not complete an operation."""


class WorkerLost(KashqError):
    """A job's worker died while running it (its attempt counts as failed)."""


class FailJob(KashqError):
    """Raise from ``handle()`` to fail the job at once: no retry, whatever its tries.

    ``failed()`` is called and the job is recorded in ``failed_jobs`` with the
    message as its error (Laravel's ``$this->fail()``).
    """

    def __init__(self, reason: str = "the job failed itself") -> None:
        super().__init__(reason)


class JobCancelled(KashqError):
    """The running job was cancelled (:func:`kashq.cancel`, ``queue:cancel``).

    Raised inside ``handle()`` at its next cooperative check: ``self.cancelled()``,
    ``self.progress()``, or (async handlers) the next ``await``. The attempt ends
    ``cancelled``: never retried, no ``failed()`` call, not in ``failed_jobs``. A job
    may catch it to clean up; raising it from ``handle()`` ends the job cancelled too.
    """

    def __init__(self, message: str = "the job was cancelled") -> None:
        super().__init__(message)


class ImportFailed(KashqError):
    """A job module could not be imported; ``details`` holds its traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details
