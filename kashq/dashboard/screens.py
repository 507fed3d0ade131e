"""The dashboard's screens: each reads what it shows and names the template that shows it.

A screen takes the dashboard and the request (and the id in its path, if any)
and returns a :class:`Page`, None for "no such thing" (404), or a
:class:`~kashq.dashboard.http.Response` (a redirect). A ValueError is a bad
query string (400); a KashqError a store that is down (503).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kashq.dashboard import data
from kashq.dashboard.charts import Series, line_chart
from kashq.dashboard.data import WINDOWS, History
from kashq.dashboard.http import Request, Response
from kashq.failed.base import FailedFilter
from kashq.listing import STATES, list_jobs
from kashq.names import check_queue_name
from kashq.workflows.batches.base import MemberState

if TYPE_CHECKING:
    from kashq.dashboard.core import Dashboard

PAGE_SIZE = 50
ID_TEXT = re.compile(r"[A-Za-z0-9_:-]{1,64}")
"""What a job or batch id in a dashboard path may hold (kashq's ids are UUIDs)."""
ID_DIGITS = 18
"""The most digits a failed job's id is taken with (more would overflow the column)."""
MEMBER_STATES: tuple[MemberState, ...] = ("failed", "cancelled", "done")
BATCH_MEMBERS_SHOWN = 200


@dataclass
class Page:
    """A screen to render: its template, what the template shows, and whether it refreshes."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    live: bool = True


def overview(dash: Dashboard, request: Request) -> Page:
    board = dash.board
    hour = data.history(board, "hour")
    rows = data.queue_rows(board, hour)
    recent = hour.total()
    return Page("overview.html", {
        "rows": rows,
        "supervisors": data.supervisors(board),
        "done_per_min": sum(r.done_per_min for r in rows),
        "failed_per_min": sum(r.failed_per_min for r in rows),
        "hour": recent,
        "failed_total": sum(r.failed for r in rows),
        "waiting": sum(r.ready + r.delayed for r in rows),
        "longest_wait": max((r.oldest_wait_s or 0.0 for r in rows), default=0.0),
        "charts": _charts(hour),
    })  # fmt: skip


def queues(dash: Dashboard, request: Request) -> Page:
    board = dash.board
    window = _window(request)
    span = data.history(board, window)
    rows = data.queue_rows(board, span if window == "hour" else data.history(board, "hour"))
    charts = {row.name: _queue_charts(row.name, span.only(row.name)) for row in rows}
    return Page("queues.html", {"rows": rows, "window": window, "charts": charts})


def jobs(dash: Dashboard, request: Request) -> Page | Response:
    board = dash.board
    wanted = request.arg("id")
    if wanted:
        if not ID_TEXT.fullmatch(wanted):
            raise ValueError(f"not a job id: {wanted[:40]!r}")
        return Response.redirect(request.url(f"/jobs/{wanted}"))
    state = request.arg("state", "ready") or "ready"
    queue = request.arg("queue") or None
    job_type = request.arg("type") or None
    tag = request.arg("tag") or None
    page = list_jobs(
        board.manager, queue=queue, state=state, job_type=job_type, tag=tag, limit=PAGE_SIZE,
        cursor=request.arg("cursor") or None, connection=board.connection,
    )  # fmt: skip
    return Page("jobs.html", {
        "page": page, "state": state, "states": STATES, "queue": queue or "",
        "job_type": job_type or "", "tag": tag or "",
        "queues": board.driver().queue_names(),
        "keeps_recent": board.manager.settings.keep_completed > 0,
    })  # fmt: skip


def job(dash: Dashboard, request: Request, id: str) -> Page | None:
    view = data.job_view(dash.board, id)
    if view is None:
        return None
    # An ended job no longer changes: its page stays still (a traceback stays open).
    return Page("job.html", {"job": view, "state": view.status.state}, live=not view.status.done)


def failed(dash: Dashboard, request: Request) -> Page:
    board = dash.board
    where = failed_filter(request.query())
    store = board.manager.failed_store(board.connection)
    cursor = request.arg("cursor")
    if cursor and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= ID_DIGITS):
        raise ValueError(f"not a cursor of the failed jobs: {cursor[:40]!r}")
    rows = store.page(where=where, before_id=int(cursor) if cursor else None, limit=PAGE_SIZE)
    more = len(rows) == PAGE_SIZE
    return Page("failed.html", {
        "rows": rows, "where": where, "total": store.count(where=where),
        "queues": sorted(store.counts_by_queue()),
        "next_cursor": str(rows[-1].id) if more else None,
        "filter_fields": _filter_fields(where),
        "filtered": where != FailedFilter(),
    }, live=dash.operations.running())  # fmt: skip


def batches(dash: Dashboard, request: Request) -> Page:
    board = dash.board
    before = request.arg("before")
    try:
        before_at = float(before) if before else None
    except ValueError:
        raise ValueError(f"not a cursor of the batches: {before[:40]!r}") from None
    records = board.manager.batches(board.connection).recent(PAGE_SIZE, before_at)
    more = len(records) == PAGE_SIZE
    return Page("batches.html", {
        "batches": [board.manager.batch_of(r, board.connection) for r in records],
        "next_before": repr(records[-1].created_at) if more else None,
    })  # fmt: skip


def batch(dash: Dashboard, request: Request, id: str) -> Page | None:
    board = dash.board
    found = board.manager.find_batch(id, board.connection)
    if found is None:
        return None
    store = board.manager.batches(board.connection)
    ended = {state: store.member_ids(found.id, state) for state in MEMBER_STATES}
    gone = {job_id for ids in ended.values() for job_id in ids}
    members = {state: ids[:BATCH_MEMBERS_SHOWN] for state, ids in ended.items()}
    pending = [job_id for job_id in found.job_ids() if job_id not in gone]
    return Page("batch.html", {
        "batch": found, "members": members, "pending": pending[:BATCH_MEMBERS_SHOWN],
        "options": json.loads(found.record.options or "{}"),
    })  # fmt: skip


def schedules(dash: Dashboard, request: Request) -> Page:
    from kashq.scheduler.recurring import schedule
    from kashq.scheduler.runner import LAST_FIRE_PREFIX

    board = dash.board
    fires: dict[str, dict[str, Any]] = {}
    for name, text in board.driver().get_control(LAST_FIRE_PREFIX).items():
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict):
            fires[name.removeprefix(LAST_FIRE_PREFIX)] = record
    zone = board.manager.settings.timezone
    now = board.now()
    entries = []
    for entry in schedule.entries():
        trigger = entry.trigger(zone)
        upcoming, at = [], now
        for _ in range(3):
            at = trigger.next_after(at)
            upcoming.append(at)
        what = entry.job.type_name if entry.job is not None else _function_name(entry.function)
        last = fires.pop(entry.name, None)
        zone_name = entry.zone_name(zone)
        entries.append(
            {"entry": entry, "next": upcoming, "what": what, "zone": zone_name, "last": last}
        )
    return Page("schedules.html", {"entries": entries, "others": sorted(fires.items())})


def _function_name(function: Any) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}()"


def metrics(dash: Dashboard, request: Request) -> Page:
    board = dash.board
    window = _window(request)
    by = request.arg("by", "queue")
    if by not in ("queue", "type"):
        raise ValueError(f"by must be queue or type, got {by!r}")
    queue = request.arg("queue") or None
    job_type = request.arg("type") or None
    chosen = data.history(board, window).only(queue, job_type)
    rows = chosen.by("queue" if by == "queue" else "job_type")
    return Page("metrics.html", {
        "window": window, "by": by, "queue": queue or "", "job_type": job_type or "",
        "rows": rows, "total": chosen.total(), "charts": _charts(chosen),
        "keep_s": board.manager.settings.keep_history,
    })  # fmt: skip


# -- helpers ----------------------------------------------------------------------


def _window(request: Request) -> str:
    window = request.arg("range", "hour")
    if window not in WINDOWS:
        raise ValueError(f"range must be one of {', '.join(WINDOWS)}, got {window!r}")
    return window


def _done_failed(span: History) -> tuple[list[int], list[Series]]:
    """Jobs done and failed per minute, each slot's average."""
    per = float(span.step)
    totals = span.per_slot()
    done = [t.done / per for t in totals]
    failed = [t.failed / per for t in totals]
    return span.slots(), [Series("done", done), Series("failed", failed)]


def _queue_charts(name: str, span: History) -> list[str]:
    """A queue's jobs per minute, and its jobs' wait before they started."""
    minutes, totals = span.slots(), span.per_slot()
    waits = [
        Series("average", [t.wait_avg_ms for t in totals]),
        Series("longest", [t.wait_max_ms if t.waits else None for t in totals]),
    ]
    return [
        line_chart(f"{name}: jobs per minute", *_done_failed(span)),
        line_chart(f"{name}: wait before start", minutes, waits, unit=" ms"),
    ]


def _charts(span: History) -> dict[str, str]:
    """The three charts of a window: jobs, wait times and run times."""
    minutes, totals, per = span.slots(), span.per_slot(), float(span.step)
    return {
        "throughput": line_chart("jobs per minute", minutes, [
            Series("done", [t.done / per for t in totals]),
            Series("failed", [t.failed / per for t in totals]),
            Series("retried", [t.retried / per for t in totals]),
        ]),
        "wait": line_chart("wait before start", minutes, [
            Series("average", [t.wait_avg_ms for t in totals]),
            Series("longest", [t.wait_max_ms if t.waits else None for t in totals]),
        ], unit=" ms"),
        "runtime": line_chart("run time", minutes, [
            Series("average", [t.run_avg_ms for t in totals]),
            Series("longest", [t.run_max_ms if t.runs else None for t in totals]),
        ], unit=" ms"),
    }  # fmt: skip


def failed_filter(query: dict[str, list[str]]) -> FailedFilter:
    """The filter of the Failed screen's fields (``queue``, ``type``, ``error``, ``since``,
    ``until``: the times as ``YYYY-MM-DDTHH:MM``, local time); ValueError if one is bad."""

    def field(name: str) -> str | None:
        value = (query.get(name) or [""])[0].strip()
        return value or None

    queue = field("queue")
    if queue is not None:
        check_queue_name(queue)
    return FailedFilter(
        queue=queue, job_type=field("type"), error=field("error"),
        since=_local_time(field("since"), "since"), until=_local_time(field("until"), "until"),
    )  # fmt: skip


def _local_time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).astimezone()
    except (ValueError, OverflowError):
        raise ValueError(
            f"{name} must be a date and time (YYYY-MM-DDTHH:MM), got {text!r}"
        ) from None


def _filter_fields(where: FailedFilter) -> list[tuple[str, str]]:
    """The filter as hidden form fields (for the bulk actions)."""
    fields = [("queue", where.queue), ("type", where.job_type), ("error", where.error)]
    for name, at in (("since", where.since), ("until", where.until)):
        fields.append((name, at.strftime("%Y-%m-%dT%H:%M") if at is not None else None))
    return [(name, value) for name, value in fields if value]
