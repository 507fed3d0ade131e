"""The metrics history in the ``job_history`` table (SQLite, PostgreSQL, MySQL/MariaDB).

A row per (span, minute, queue, job type), its primary key: ``span`` is 1 (a
minute) or 15 (the quarter of an hour starting at ``minute``).
:meth:`~DatabaseHistoryStore.add` is one transaction: it reads which series
the written spans hold (a key range each), folds new series beyond
``series_max`` into ``(other)``, and upserts the rest, adding to the counts
and keeping the larger maxima. Spans past their age are deleted by key range,
at most once a minute. Writers that add new series to one span at the same
instant may each pass the cap once, so a span holds at most ``series_max``
plus what they add together. Database failures are one-line
:class:`~kashq.history.base.HistoryStoreError`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import URL, Connection, Engine, Table, delete, func, or_, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from kashq.clock import SYSTEM_CLOCK, Clock
from kashq.db.engine import Database
from kashq.db.schema import MYSQL
from kashq.history.base import (
    FIGURES,
    MAXED,
    OTHER,
    SERIES_MAX,
    SPANS,
    HistoryStoreError,
    MinuteFigures,
    check_window,
    combine,
    merge,
)
from kashq.history.memory import first_kept

_SWEEP_EVERY_S = 60.0


class DatabaseHistoryStore:
    """The metrics history as rows of ``job_history`` (``<table_prefix>job_history``)."""

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        clock: Clock = SYSTEM_CLOCK,
        table_prefix: str | None = None,
        keep_s: float = 86_400.0,
        series_max: int = SERIES_MAX,
    ) -> None:
        self._db = Database(engine_or_url, error=HistoryStoreError, table_prefix=table_prefix)
        self._table = self._db.tables.job_history
        self._upsert = _upsert(self._db.dialect, self._table)
        self._clock = clock
        self._keep_s = keep_s
        self.series_max = series_max
        self._sweep_lock = threading.Lock()
        self._next_sweep_at = -math.inf

    @property
    def keep_s(self) -> float:
        return self._keep_s

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def add(self, figures: Sequence[MinuteFigures]) -> None:
        now = self._clock.time()
        series = combine(figures, first_kept(now, self._keep_s))
        if not series:
            return
        c = self._table.c

        def write(conn: Connection) -> None:
            held: dict[tuple[int, int], set[tuple[str, str]]] = {}
            for span in SPANS:
                starts = sorted({start for s, start, _, _ in series if s == span})
                for start in starts:
                    held[(span, start)] = set()
                if not starts:
                    continue
                query = select(c.minute, c.queue, c.job_type).where(
                    (c.span == span) & c.minute.in_(starts)
                )
                for minute, queue, job_type in conn.execute(query):
                    held[(span, int(minute))].add((queue, job_type))
            rows: dict[tuple[int, int, str, str], list[float]] = {}
            for (span, start, queue, job_type), numbers in sorted(series.items()):
                kept, name = held[(span, start)], (queue, job_type)
                if name not in kept and len(kept) >= self.series_max:
                    name = (OTHER, OTHER)
                kept.add(name)
                key = (span, start, *name)
                old = rows.get(key)
                rows[key] = numbers if old is None else merge(old, numbers)
            conn.execute(self._upsert, [_row(key, numbers) for key, numbers in rows.items()])

        self._db.run(write, what="writing the metrics history")
        self._maybe_sweep(now)

    def read(self, first_minute: int, last_minute: int, span: int = 1) -> list[MinuteFigures]:
        check_window(first_minute, last_minute, span)
        oldest = first_kept(self._clock.time(), self._keep_s)
        first = max(first_minute, oldest - span + 1)
        c = self._table.c
        query = (
            select(c.minute, c.queue, c.job_type, *(c[n] for n in FIGURES))
            .where((c.span == span) & c.minute.between(first, last_minute))
            .order_by(c.minute, c.queue, c.job_type)
        )
        rows = self._db.run(
            lambda conn: conn.execute(query).all(), what="reading the metrics history", atomic=False
        )
        return [MinuteFigures.of(int(r[0]), r[1], r[2], r[3:]) for r in rows]

    def rows(self) -> int:
        """How many rows the table holds (the storage bound's test reads it)."""
        query = select(func.count()).select_from(self._table)
        return int(self._db.run(lambda conn: conn.execute(query).scalar_one(), what="counting"))

    def close(self) -> None:
        """Dispose of the engine if this store created it (a borrowed one stays)."""
        self._db.close()

    def _maybe_sweep(self, now: float) -> None:
        with self._sweep_lock:
            if now < self._next_sweep_at:
                return
            self._next_sweep_at = now + _SWEEP_EVERY_S
        c, oldest = self._table.c, first_kept(now, self._keep_s)
        aged = or_(*((c.span == span) & (c.minute <= oldest - span) for span in SPANS))
        statement = delete(self._table).where(aged)
        self._db.run(lambda conn: conn.execute(statement), what="deleting aged metrics history")


def _row(key: tuple[int, int, str, str], numbers: list[float]) -> dict[str, Any]:
    span, minute, queue, job_type = key
    figures = dict(zip(FIGURES, numbers, strict=True))
    return {"span": span, "minute": minute, "queue": queue, "job_type": job_type, **figures}


def _upsert(dialect: str, table: Table) -> Insert:
    """An insert that adds to a series already stored (and keeps the larger maxima)."""
    c = table.c
    if dialect in MYSQL:
        on_mysql = mysql.insert(table)
        new = on_mysql.inserted
        return on_mysql.on_duplicate_key_update(
            [(n, func.greatest(c[n], new[n]) if n in MAXED else c[n] + new[n]) for n in FIGURES]
        )
    on_conflict = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
    new = on_conflict.excluded
    larger = func.max if dialect == "sqlite" else func.greatest  # SQLite's max(a, b) is scalar
    return on_conflict.on_conflict_do_update(
        index_elements=[c.span, c.minute, c.queue, c.job_type],
        set_={n: larger(c[n], new[n]) if n in MAXED else c[n] + new[n] for n in FIGURES},
    )
