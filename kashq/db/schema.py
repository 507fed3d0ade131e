"""kashq's tables, declared once: the queue (``kashq_jobs``), ``failed_jobs``, ``kashq_control``...

The Alembic migrations in ``alembic/versions/`` create exactly this schema (a
test compares them). :func:`tables` declares it under a name prefix
(``KASHQ_TABLE_PREFIX``): every table, index and constraint name starts with
it, so kashq's tables never collide with an application's, and two kashq
installs with different prefixes share one database. The module-level tables
are the unprefixed ones. Times in ``kashq_jobs`` are Unix seconds, like the
envelope's; ``failed_jobs.failed_at`` is a timezone-aware UTC datetime.

``kashq_jobs.available_at`` does double duty, Laravel-style: for a waiting job
it is when the job may run (now or later); for a reserved job it is the end of
its lease. So "eligible" is simply ``available_at <= now``, and a job whose
worker vanished becomes eligible again when its lease lapses. ``token`` is set
while a job is reserved and names its current holder.

``kashq_control`` holds the driver's control records (the restart signal,
supervisors' live stats); ``expires_at`` is Unix seconds, or NULL for never.

``job_results`` keeps each job's outcome and progress by id until its
``expires_at`` (Unix seconds on the driver's clock); see :mod:`kashq.results`.

``kashq_job_tags`` is the tag index of ``kashq_jobs``: a row per tag of each
tagged job, written with the job and deleted when it leaves.

``job_recent`` lists the jobs that ended recently (completed, cancelled,
expired), per queue and outcome, trimmed by age and count; see :mod:`kashq.recent`.

``kashq_job_once`` remembers the ids ``push_once`` stored, each until its
``expires_at`` (Unix seconds): the chain steps and callbacks of workflows.

``job_batches`` holds each batch's counts and callbacks' state, and
``kashq_batch_jobs`` its jobs, in dispatch order, with how each ended (NULL
while pending); see :mod:`kashq.workflows.batches`.

``job_history`` is the metrics history: a row per span (a minute, or the quarter
of an hour from ``minute``: Unix seconds // 60), queue and job type, added to
by the workers; see :mod:`kashq.history`.

``kashq_outbox`` holds the jobs dispatched inside an application's transaction
for a connection other than the database (``dispatch(using=...)``), in order,
until the relay has pushed them; see :mod:`kashq.outbox`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql

from kashq.exceptions import ConfigError

VERSION_TABLE = "kashq_alembic_version"
"""Alembic's version table for kashq, apart from the host application's (prefixed too)."""
TABLE_PREFIX = re.compile(r"^([a-z][a-z0-9_]{0,31})?$")
"""A table prefix: lowercase (PostgreSQL folds unquoted names; MySQL's case rules
depend on the OS), short enough for every name to fit PostgreSQL's 63 bytes."""

MYSQL = ("mysql", "mariadb")

# SQLite only autoincrements an INTEGER PRIMARY KEY (an alias of the rowid).
SEQ_TYPE = BigInteger().with_variant(Integer(), "sqlite")
# MySQL's TEXT holds 64 KiB; envelopes and tracebacks may be longer.
LONG_TEXT = Text().with_variant(mysql.LONGTEXT(), *MYSQL)
# MySQL compares strings case-insensitively by default; control names are exact.
CONTROL_NAME = String(191).with_variant(mysql.VARCHAR(191, collation="utf8mb4_bin"), *MYSQL)
# ... and so are the queue names and job ids of the recent jobs' lists (job_recent).
EXACT_QUEUE = String(200).with_variant(mysql.VARCHAR(200, collation="utf8mb4_bin"), *MYSQL)
EXACT_JOB_ID = String(36).with_variant(mysql.VARCHAR(36, collation="utf8mb4_bin"), *MYSQL)
# Tags are exact too (kashq.names.TAG_MAX characters).
TAG = String(100).with_variant(mysql.VARCHAR(100, collation="utf8mb4_bin"), *MYSQL)
# MySQL's DATETIME drops fractions of a second unless asked to keep them.
AWARE_DATETIME = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MYSQL)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns an aware UTC datetime.

    PostgreSQL keeps the zone (``timestamptz``); SQLite and MySQL do not, so
    values are written there as naive UTC and read back as UTC.
    """

    impl = AWARE_DATETIME
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        utc = as_utc(value)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass(frozen=True, eq=False)
class Tables:
    """kashq's tables under one name prefix (see :func:`tables`)."""

    prefix: str
    metadata: MetaData
    jobs: Table
    failed_jobs: Table
    control: Table
    locks: Table
    counters: Table
    job_events: Table
    job_results: Table
    job_recent: Table
    job_tags: Table
    job_once: Table
    job_batches: Table
    batch_jobs: Table
    job_history: Table
    outbox: Table

    @property
    def version_table(self) -> str:
        """Alembic's version table of this install."""
        return self.prefix + VERSION_TABLE


def check_table_prefix(prefix: str) -> str:
    """``prefix`` if it is a valid table prefix, else a :class:`ConfigError` saying why."""
    if not TABLE_PREFIX.match(prefix):
        raise ConfigError(
            f"invalid table prefix {prefix!r}: up to 32 lowercase letters, digits and "
            "underscores, starting with a letter (e.g. app_)"
        )
    return prefix


@functools.cache
def tables(prefix: str) -> Tables:
    """kashq's tables with every table, index and constraint name starting with ``prefix``."""
    check_table_prefix(prefix)
    metadata = MetaData()

    def name(base: str) -> str:
        return prefix + base

    return Tables(
        prefix,
        metadata,
        jobs=_jobs(metadata, name),
        failed_jobs=_failed_jobs(metadata, name),
        control=_control(metadata, name),
        locks=_locks(metadata, name),
        counters=_counters(metadata, name),
        job_events=_job_events(metadata, name),
        job_results=_job_results(metadata, name),
        job_recent=_job_recent(metadata, name),
        job_tags=_job_tags(metadata, name),
        job_once=_job_once(metadata, name),
        job_batches=_job_batches(metadata, name),
        batch_jobs=_batch_jobs(metadata, name),
        job_history=_job_history(metadata, name),
        outbox=_outbox(metadata, name),
    )


Name = Callable[[str], str]


def _jobs(metadata: MetaData, name: Name) -> Table:
    table = Table(
        name("kashq_jobs"),
        metadata,
        Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
        Column("id", String(36), nullable=False),
        Column("queue", String(200), nullable=False),
        Column("raw", LONG_TEXT, nullable=False),
        Column("priority", Integer, nullable=False, server_default=text("0")),
        Column("available_at", Double, nullable=False),
        Column("token", String(64), nullable=True),
        Column("deliveries", Integer, nullable=False, server_default=text("0")),
        UniqueConstraint("id", name=name("uq_kashq_jobs_id")),
    )
    # Serves reserve's "first eligible job of this queue by priority, then FIFO":
    # an index scan in (priority DESC, seq) order that stops at the first
    # available row.
    c = table.c
    Index(name("ix_kashq_jobs_reserve"), c.queue, c.priority.desc(), c.seq)
    # Serves the delayed jobs by time (token NULL), the reserved ones (token set)
    # and the oldest ready job: Driver.list_jobs and Driver.oldest_ready.
    Index(name("ix_kashq_jobs_state"), c.queue, c.token, c.available_at, c.seq)
    return table


def _failed_jobs(metadata: MetaData, name: Name) -> Table:
    table = Table(
        name("failed_jobs"),
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("uuid", String(36), nullable=False),
        Column("connection", String(100), nullable=False),
        Column("queue", String(200), nullable=False),
        Column("job_type", String(255), nullable=False),
        Column("payload", LONG_TEXT, nullable=False),
        Column("error", Text, nullable=False),
        Column("exception", LONG_TEXT, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("failed_at", UTCDateTime(), nullable=False),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("reason", String(32), nullable=False, server_default=text("''")),
        UniqueConstraint("uuid", name=name("uq_failed_jobs_uuid")),
        # An id is never handed out twice, even after the newest rows are deleted:
        # `queue:forget 3` from an old listing must not hit another job. (The
        # other databases' sequences never reuse ids anyway.)
        sqlite_autoincrement=True,
    )
    Index(name("ix_failed_jobs_failed_at"), table.c.failed_at)
    # Serves the dashboard's filter by job type, newest first.
    Index(name("ix_failed_jobs_job_type"), table.c.job_type, table.c.id)
    Index(name("ix_failed_jobs_queue"), table.c.queue)
    return table


def _control(metadata: MetaData, name: Name) -> Table:
    return Table(
        name("kashq_control"),
        metadata,
        Column("name", CONTROL_NAME, primary_key=True),
        Column("value", Text, nullable=False),
        Column("expires_at", Double, nullable=True),
    )


def _locks(metadata: MetaData, name: Name) -> Table:
    """Distributed locks (kashq.locks on the database driver): a row per held lock;
    an expired row is free to take."""
    return Table(
        name("kashq_locks"),
        metadata,
        Column("name", CONTROL_NAME, primary_key=True),
        Column("token", String(64), nullable=False),
        Column("expires_at", Double, nullable=False),
    )


def _counters(metadata: MetaData, name: Name) -> Table:
    """Windowed counters (rate limits, exception throttles): one row per key and window."""
    return Table(
        name("kashq_counters"),
        metadata,
        Column("name", CONTROL_NAME, primary_key=True),
        Column("value", BigInteger, nullable=False),
        Column("expires_at", Double, nullable=False),
    )


def _job_events(metadata: MetaData, name: Name) -> Table:
    """The event store on the database driver: one row per lifecycle step of a job."""
    table = Table(
        name("job_events"),
        metadata,
        Column("id", SEQ_TYPE, primary_key=True, autoincrement=True),
        Column("job_id", String(36), nullable=False),
        Column("type", String(32), nullable=False),
        Column("job_type", String(255), nullable=False),
        Column("queue", String(200), nullable=False),
        Column("attempt", Integer, nullable=False, server_default=text("0")),
        Column("at", Double, nullable=False),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("details", Text, nullable=False),
    )
    Index(name("ix_job_events_job_id"), table.c.job_id, table.c.id)
    Index(name("ix_job_events_at"), table.c.at)
    return table


def _job_results(metadata: MetaData, name: Name) -> Table:
    """The result store on the database driver: a job's outcome and latest progress.

    ``status`` is NULL while only progress was reported.
    """
    table = Table(
        name("job_results"),
        metadata,
        Column("job_id", String(36), primary_key=True),
        Column("status", String(16), nullable=True),
        Column("job_type", String(255), nullable=False, server_default=text("''")),
        Column("queue", String(200), nullable=False, server_default=text("''")),
        Column("value", LONG_TEXT, nullable=True),
        Column("error", Text, nullable=True),
        Column("reason", String(32), nullable=False, server_default=text("''")),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("finished_at", Double, nullable=True),
        Column("progress", Double, nullable=True),
        Column("message", Text, nullable=True),
        Column("progress_at", Double, nullable=True),
        Column("expires_at", Double, nullable=False),
    )
    # Serves the sweep of expired rows.
    Index(name("ix_job_results_expires_at"), table.c.expires_at)
    return table


def _job_recent(metadata: MetaData, name: Name) -> Table:
    """The recent jobs on the database driver: a row per job that ended, per queue and outcome.

    One row per job in each list (``outcome``: completed, cancelled, expired);
    ``tags`` is a JSON list, ``error`` why a job did not run.
    """
    table = Table(
        name("job_recent"),
        metadata,
        Column("id", SEQ_TYPE, primary_key=True, autoincrement=True),
        Column("queue", EXACT_QUEUE, nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("job_id", EXACT_JOB_ID, nullable=False),
        Column("job_type", String(255), nullable=False),
        Column("finished_at", Double, nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("duration_s", Double, nullable=True),
        Column("tags", Text, nullable=False),
        Column("error", Text, nullable=False),
        UniqueConstraint("queue", "outcome", "job_id", name=name("uq_job_recent_job")),
    )
    c = table.c
    # Serves pages (newest first, by keyset), counts and the trims of one list.
    Index(name("ix_job_recent_list"), c.queue, c.outcome, c.finished_at, c.job_id)
    # Serves the sweep of rows past their age, and the list of queues.
    Index(name("ix_job_recent_finished_at"), c.finished_at)
    return table


def _job_once(metadata: MetaData, name: Name) -> Table:
    """The ids ``push_once`` stored, each remembered until ``expires_at``."""
    table = Table(
        name("kashq_job_once"),
        metadata,
        Column("id", EXACT_JOB_ID, primary_key=True),
        Column("expires_at", Double, nullable=False),
    )
    Index(name("ix_kashq_job_once_expires_at"), table.c.expires_at)
    return table


def _job_batches(metadata: MetaData, name: Name) -> Table:
    """Batches: a row per batch, its counts updated by each job's end (one transaction)."""
    table = Table(
        name("job_batches"),
        metadata,
        Column("id", EXACT_JOB_ID, primary_key=True),
        Column("name", String(255), nullable=False),
        Column("total", Integer, nullable=False),
        Column("done", Integer, nullable=False, server_default=text("0")),
        Column("failed", Integer, nullable=False, server_default=text("0")),
        Column("cancelled", Integer, nullable=False, server_default=text("0")),
        Column("allow_failures", Integer, nullable=False, server_default=text("0")),
        Column("due", Integer, nullable=False, server_default=text("0")),
        Column("pushed", Integer, nullable=False, server_default=text("0")),
        Column("options", LONG_TEXT, nullable=False),
        Column("created_at", Double, nullable=False),
        Column("cancelled_at", Double, nullable=True),
        Column("finished_at", Double, nullable=True),
    )
    Index(name("ix_job_batches_created_at"), table.c.created_at, table.c.id)
    Index(name("ix_job_batches_finished_at"), table.c.finished_at)
    return table


def _batch_jobs(metadata: MetaData, name: Name) -> Table:
    """The jobs of each batch, in dispatch order (``seq``), and how each ended."""
    table = Table(
        name("kashq_batch_jobs"),
        metadata,
        Column("batch_id", EXACT_JOB_ID, primary_key=True),
        Column("job_id", EXACT_JOB_ID, primary_key=True),
        Column("seq", Integer, nullable=False),
        Column("state", String(16), nullable=True),
    )
    Index(name("ix_kashq_batch_jobs_order"), table.c.batch_id, table.c.seq)
    return table


def _job_tags(metadata: MetaData, name: Name) -> Table:
    """The tag index: one row per tag of each tagged job of ``kashq_jobs``, in the order
    they were written (``seq``), deleted with the job."""
    table = Table(
        name("kashq_job_tags"),
        metadata,
        Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
        Column("queue", String(200), nullable=False),
        Column("tag", TAG, nullable=False),
        Column("job_id", String(36), nullable=False),
    )
    c = table.c
    Index(name("ix_kashq_job_tags_tag"), c.queue, c.tag, c.seq)  # a tag's jobs, in order
    Index(name("ix_kashq_job_tags_job_id"), c.job_id)  # a leaving job's rows
    return table


def _job_history(metadata: MetaData, name: Name) -> Table:
    """The metrics history: one row per span (1 or 15 minutes from ``minute``), queue and
    job type (the key), added to."""
    zero = text("0")
    return Table(
        name("job_history"),
        metadata,
        Column("span", Integer, primary_key=True),
        Column("minute", BigInteger, primary_key=True),
        Column("queue", EXACT_QUEUE, primary_key=True),
        Column("job_type", String(255), primary_key=True),
        Column("done", Integer, nullable=False, server_default=zero),
        Column("failed", Integer, nullable=False, server_default=zero),
        Column("retried", Integer, nullable=False, server_default=zero),
        Column("runs", Integer, nullable=False, server_default=zero),
        Column("run_ms", Double, nullable=False, server_default=zero),
        Column("run_max_ms", Double, nullable=False, server_default=zero),
        Column("waits", Integer, nullable=False, server_default=zero),
        Column("wait_ms", Double, nullable=False, server_default=zero),
        Column("wait_max_ms", Double, nullable=False, server_default=zero),
    )


def _outbox(metadata: MetaData, name: Name) -> Table:
    """Jobs dispatched in an application's transaction, waiting for the relay, by ``seq``."""
    return Table(
        name("kashq_outbox"),
        metadata,
        Column("seq", SEQ_TYPE, primary_key=True, autoincrement=True),
        Column("connection", String(100), nullable=False),
        Column("raw", LONG_TEXT, nullable=False),
        Column("created_at", Double, nullable=False),
    )


_UNPREFIXED = tables("")
metadata = _UNPREFIXED.metadata
jobs = _UNPREFIXED.jobs
failed_jobs = _UNPREFIXED.failed_jobs
control = _UNPREFIXED.control
locks = _UNPREFIXED.locks
counters = _UNPREFIXED.counters
job_events = _UNPREFIXED.job_events
job_results = _UNPREFIXED.job_results
job_tags = _UNPREFIXED.job_tags
job_recent = _UNPREFIXED.job_recent
job_once = _UNPREFIXED.job_once
job_batches = _UNPREFIXED.job_batches
batch_jobs = _UNPREFIXED.batch_jobs
job_history = _UNPREFIXED.job_history
