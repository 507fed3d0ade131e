"""Turning an envelope into a call, and running it (sync or async, with timeouts).

This is the only place user code is invoked. Resolution goes through the
registry; a class-based job is rebuilt by validating its payload.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kashq.envelope import Envelope, describe_validation_error
from kashq.exceptions import JobCancelled, JobDefinitionError, JobTimeout, PayloadError
from kashq.job import Job
from kashq.middleware import JobContext, job_context, run_pipeline, running
from kashq.registry import Registry

log = logging.getLogger(__name__)
_thread = threading.local()


@dataclass(frozen=True, slots=True)
class Prepared:
    """A job ready to run: the call, and the Job instance when there is one."""

    call: Callable[[], Any]
    job: Job | None


def prepare(envelope: Envelope, registry: Registry) -> Prepared:
    """Resolve ``envelope.type`` and build the call, or raise a KashqError saying why not."""
    entry = registry.resolve(envelope.type)
    if entry.is_handler:
        fn = entry.target
        return Prepared(lambda: fn(envelope), None)
    cls: type[Job] = entry.target
    if inspect.isabstract(cls) or not callable(getattr(cls, "handle", None)):
        raise JobDefinitionError(f"job class {cls.__qualname__} defines no handle() method")
    try:
        job = cls.model_validate(envelope.payload)
    except ValidationError as exc:
        raise PayloadError(describe_validation_error(cls.__qualname__, exc)) from None
    except Exception as exc:  # a user validator raising something else
        raise PayloadError(
            f"payload of {cls.__qualname__} could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    job._kashq_envelope = envelope
    return Prepared(job.handle, job)


def run(call: Callable[[], Any], timeout_s: float | None) -> Any:
    """Call ``call``; if it returns an awaitable, run it to completion. Returns its value.

    ``timeout_s`` bounds async handlers (:class:`JobTimeout`). A synchronous
    handler cannot be interrupted from inside its own thread; process workers
    enforce its timeout from outside.
    """
    result = call()
    if inspect.isawaitable(result):
        return run_awaitable(result, timeout_s)
    return result


def run_awaitable(awaitable: Awaitable[Any], timeout_s: float | None) -> Any:
    """Run an awaitable from synchronous code, on this thread's event loop."""

    async def bounded() -> Any:
        context = running()
        signal = None if context is None else context.abort
        if signal is not None:  # a cancel of the job cancels this task
            task = asyncio.current_task()
            if task is not None:
                signal.attach(task, asyncio.get_running_loop())
        try:
            if timeout_s is None:
                return await awaitable
            try:
                return await asyncio.wait_for(awaitable, timeout_s)
            except asyncio.TimeoutError:
                raise JobTimeout(timeout_s) from None
        except asyncio.CancelledError:
            if signal is None or not signal.requested:
                raise
            signal.raised = True
            raise JobCancelled() from None
        finally:
            if signal is not None:
                signal.detach()

    if not _loop_running():
        # Outside any ``except`` block: the job's exceptions must not chain
        # to the RuntimeError that said no loop was running.
        return _thread_loop().run_until_complete(bounded())
    # Called from inside a running loop (a sync dispatch from async code):
    # that loop is busy with us, so run the job on a loop of its own thread.
    box: dict[str, Any] = {}

    def in_thread() -> None:
        try:
            box["result"] = asyncio.run(bounded())
        except BaseException as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=in_thread, name="kashq-async-job")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def close_thread_loop() -> None:
    """Close this thread's event loop, if async jobs created one."""
    loop = getattr(_thread, "loop", None)
    if loop is not None and not loop.is_closed():
        loop.close()
    _thread.loop = None


def call_failed_hook(job: Job | None, error: BaseException) -> None:
    """Call ``job.failed(error)`` if defined; its own errors are logged, never raised."""
    call_hook(job, "failed", error)


def call_hook(job: Job | None, name: str, *args: object) -> None:
    """Call ``job.<name>(*args)`` (``failed``, ``expired``) if the job defines it; its
    own errors are logged, never raised."""
    hook = getattr(job, name, None)
    if job is None or not callable(hook):
        return
    try:
        run(lambda: hook(*args), None)
    except KeyboardInterrupt:
        raise
    except BaseException:  # SystemExit too: a hook must not end the worker
        log.exception("%s() hook of %s raised", name, type(job).__qualname__)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_thread, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread.loop = loop
    return loop


def run_job(prepared: Prepared, timeout_s: float | None, context: JobContext) -> Any:
    """Run a prepared job through its middleware (if any), with ``context`` current.

    Middleware are synchronous; the innermost ``call_next`` runs ``handle()``
    to completion (async handlers on this thread's event loop). Returns what
    the pipeline returned: ``handle()``'s value unless a middleware changed it.
    """
    job = prepared.job
    with job_context(context):
        if job is None:  # a function handler: no middleware
            return run(prepared.call, timeout_s)
        layers = job.middleware()
        if layers:
            return run_pipeline(job, layers, lambda: run(prepared.call, timeout_s))
        return run(prepared.call, timeout_s)
