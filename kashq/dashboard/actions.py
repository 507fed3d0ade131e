"""The dashboard's actions: each takes the posted form's fields and returns a one-line note.

Each is the same operation as a command or function kashq already has
(``queue:pause``, ``kashq.cancel``, ``queue:retry`` ...), so the dashboard
keeps their guarantees. A ValueError or KashqError becomes the note in red.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from kashq.dashboard.screens import failed_filter
from kashq.dlq import push_back, retry_batch_failures
from kashq.drivers.base import is_job_id
from kashq.envelope import decode
from kashq.exceptions import EnvelopeError, KashqError
from kashq.names import check_queue_name

if TYPE_CHECKING:
    from kashq.dashboard.core import Dashboard
    from kashq.workflows.batch import Batch

Fields = dict[str, list[str]]
SELECTION_MAX = 1000
FILTER_FIELDS = ("queue", "type", "error", "since", "until")


def _one(fields: Fields, name: str) -> str:
    value = (fields.get(name) or [""])[0].strip()
    if not value:
        raise ValueError(f"the form has no {name}")
    return value


def _queue(fields: Fields) -> str:
    return check_queue_name(_one(fields, "queue"))


def _job_id(fields: Fields) -> str:
    job_id = _one(fields, "id")
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id[:40]!r}")
    return job_id


def pause(dash: Dashboard, fields: Fields) -> str:
    queue = _queue(fields)
    dash.board.manager.pause(queue, dash.board.connection)
    return f"queue {queue!r} paused: workers take none of its jobs until it is continued"


def resume(dash: Dashboard, fields: Fields) -> str:
    queue = _queue(fields)
    if not dash.board.manager.resume(queue, dash.board.connection):
        return f"queue {queue!r} was not paused"
    return f"queue {queue!r} continued"


def cancel(dash: Dashboard, fields: Fields) -> str:
    return dash.board.manager.cancel(_job_id(fields), dash.board.connection).message


def run_now(dash: Dashboard, fields: Fields) -> str:
    """Make a delayed job ready now: take it off its queue and push it back, due now.

    The same job (same id) goes back; if the push fails it is pushed again as it
    was, so the job is never left off its queue.
    """
    job_id = _job_id(fields)
    driver = dash.board.driver()
    found = driver.find(job_id)
    if found is None or found.state != "delayed":
        raise ValueError(f"job {job_id} is not waiting for its time (it is {_state(found)})")
    try:
        envelope = decode(found.raw)
    except EnvelopeError as exc:
        raise ValueError(f"job {job_id} cannot be read: {exc}") from None
    removed = driver.remove(job_id, [found.queue])
    if removed is None:
        raise ValueError(f"job {job_id} left its queue meanwhile")
    now = driver.storage.clock.time()
    try:
        driver.push(dataclasses.replace(envelope, available_at=now))
    except KashqError:
        driver.push(envelope)  # put it back as it was; if this fails too, it raises
        raise
    return f"job {job_id} is ready now"


def _state(found: object) -> str:
    return "not on any queue" if found is None else str(getattr(found, "state", "?"))


def retry(dash: Dashboard, fields: Fields) -> str:
    """Retry one failed job now (by its id or uuid)."""
    board = dash.board
    store = board.manager.failed_store(board.connection)
    key = _one(fields, "id")
    job = store.find(key)
    if job is None:
        raise ValueError(f"no failed job {key[:40]!r} (retried or forgotten meanwhile?)")
    fresh = push_back(board.manager, store, job)
    return f"job {fresh.id} pushed back onto {fresh.queue!r}"


def failed_retry(dash: Dashboard, fields: Fields) -> str:
    return _bulk(dash, fields, "retry")


def failed_forget(dash: Dashboard, fields: Fields) -> str:
    return _bulk(dash, fields, "forget")


def _bulk(dash: Dashboard, fields: Fields, action: str) -> str:
    """Retry or forget the selected failed jobs (``ids``), or every job matching the filter
    (``all`` = ``1``, with the filter's fields): the latter on a thread, with progress."""
    board = dash.board
    store = board.manager.failed_store(board.connection)
    if (fields.get("all") or [""])[0] == "1":
        where = failed_filter(fields)
        op = dash.operations.start(
            board.manager, board.connection, action, where, _describe(fields)
        )
        return f"{action} of {op.total} failed job(s) started: see its progress above"
    ids = [v for v in fields.get("ids", []) if v.isascii() and v.isdigit() and len(v) <= 18]
    if not ids:
        raise ValueError("select some failed jobs first")
    if len(ids) > SELECTION_MAX:
        raise ValueError(f"select at most {SELECTION_MAX} jobs, or act on the whole filter")
    if action == "forget":
        return f"{store.forget_many([int(i) for i in ids])} failed job(s) forgotten"
    done, errors = 0, []
    for key in ids:
        job = store.find(int(key))
        if job is None:
            continue
        try:
            push_back(board.manager, store, job)
        except KashqError as exc:
            errors.append(str(exc))
        else:
            done += 1
    if errors:
        raise KashqError(f"{done} retried, {len(errors)} not: {errors[0]}")
    return f"{done} failed job(s) pushed back"


def _describe(fields: Fields) -> str:
    values = {name: (fields.get(name) or [""])[0] for name in FILTER_FIELDS}
    parts = [f"{name} {value!r}" for name, value in values.items() if value]
    return "failed jobs " + (", ".join(parts) if parts else "(all)")


def batch_cancel(dash: Dashboard, fields: Fields) -> str:
    batch = _batch(dash, fields)
    if batch.finished:
        raise ValueError(f"batch {batch.id} has already finished")
    batch.cancel()
    return f"batch {batch.id} cancelled: {batch.pending} job(s) had not ended"


def batch_retry(dash: Dashboard, fields: Fields) -> str:
    board = dash.board
    batch = _batch(dash, fields)
    store = board.manager.failed_store(board.connection)
    retried, missing = retry_batch_failures(board.manager, store, batch, board.connection)
    gone = f" ({len(missing)} no longer in the failed jobs)" if missing else ""
    return f"{retried} failed job(s) of batch {batch.id} pushed back{gone}"


def _batch(dash: Dashboard, fields: Fields) -> Batch:
    board = dash.board
    batch_id = _one(fields, "id")
    found = board.manager.find_batch(batch_id, board.connection)
    if found is None:
        raise ValueError(f"no batch {batch_id[:40]!r}")
    return found
