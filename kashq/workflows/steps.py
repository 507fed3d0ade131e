"""The worker's side of chains: push the next step, or the ``catch`` callbacks.

Called before the step's ack (see :mod:`kashq.workflows.chain`). A next step
that cannot be pushed (the connection is down) is not lost and does not make
the step run again: the step goes back to its queue marked ``done``, and its
next delivery pushes the successor without running the step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import TYPE_CHECKING, Any

from kashq import tracing
from kashq.envelope import ChainState, Envelope, decode
from kashq.exceptions import JobDefinitionError
from kashq.workflows.chain import (
    CHAIN_ID,
    FAILED_ERROR,
    FAILED_JOB_ID,
    FAILED_JOB_TYPE,
    as_object,
    derived_id,
)

if TYPE_CHECKING:
    from kashq.drivers.base import Driver
    from kashq.job import Dispatchable
    from kashq.middleware import JobContext

Edits = list[tuple[bool, dict[str, Any]]]
"""A running step's changes to its chain, in call order: (prepend?, the job's envelope)."""


def add_to_chain(context: JobContext, job: Dispatchable, *, first: bool) -> None:
    """Note that the step running in ``context`` adds ``job`` after itself (``first``)
    or at the end of its chain. The job's id derives from the step's and the order."""
    from kashq.manager import manager

    if job.target_connection() not in (None, context.connection):
        raise JobDefinitionError(
            f"a chain runs on one connection: {job!r} names {job.target_connection()!r}"
        )
    env = manager().envelope_for(job)
    edits = context.chain_edits
    env.id = derived_id(context.envelope.id, f"{'prepend' if first else 'append'}.{len(edits)}")
    edits.append((first, as_object(env)))


def next_step(env: Envelope, edits: Edits, now: float) -> Envelope | None:
    """The step to push after ``env`` completed, carrying the rest of the chain; None
    at the end of it."""
    chain = _folded(env, edits)
    if not chain.next:
        return None
    head = decode(json.dumps(chain.next[0]))
    delay_s = max(head.available_at - head.created_at, 0.0)  # a step's own delay still applies
    rest = ChainState(chain.id, chain.next[1:], chain.catch, prev=env.id)
    return dataclasses.replace(head, created_at=now, available_at=now + delay_s, chain=rest)


def push_next(driver: Driver, env: Envelope, edits: Edits, now: float) -> None:
    """Push the step after ``env`` (raises :class:`~kashq.exceptions.DriverError`)."""
    step = next_step(env, edits, now)
    if step is not None:
        tracing.forward([step], lambda: driver.push_once(step))


def done(env: Envelope, edits: Edits, available_at: float) -> Envelope:
    """``env`` marked completed, its edits folded in: to go back to its queue when its
    successor could not be pushed, so that its next delivery only pushes it."""
    return dataclasses.replace(
        env, chain=dataclasses.replace(_folded(env, edits), done=True), available_at=available_at
    )


def push_catch(driver: Driver, env: Envelope, error: str, now: float) -> None:
    """Push the ``catch`` callbacks of ``env``'s chain, once each: ``env`` failed for
    good with ``error`` (one line)."""
    if env.chain is None:
        return
    for number, callback in enumerate(env.chain.catch):
        job = decode(json.dumps(callback))
        metadata = {
            **job.metadata, CHAIN_ID: env.chain.id, FAILED_JOB_ID: env.id,
            FAILED_JOB_TYPE: env.type, FAILED_ERROR: error,
        }  # fmt: skip
        delay_s = max(job.available_at - job.created_at, 0.0)
        job = dataclasses.replace(
            job, id=derived_id(env.chain.id, f"catch.{number}"), metadata=metadata,
            created_at=now, available_at=now + delay_s,
        )  # fmt: skip
        tracing.forward([job], functools.partial(driver.push_once, job))


def _folded(env: Envelope, edits: Edits) -> ChainState:
    """``env``'s chain with the running step's edits applied (a job not in a chain that
    adds jobs starts one). Prepends go first, the latest first, as in Laravel."""
    chain = env.chain or ChainState(env.id)
    if not edits:
        return chain
    first = [job for prepend, job in reversed(edits) if prepend]
    last = [job for prepend, job in edits if not prepend]
    return dataclasses.replace(chain, next=(*first, *chain.next, *last))
