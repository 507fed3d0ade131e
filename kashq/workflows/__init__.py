"""Workflows: Laravel's Bus for kashq. Chains (:mod:`.chain`): jobs run one after another;
batches (:mod:`.batch`): jobs run at once, counted as one, with callbacks."""

from __future__ import annotations

from collections.abc import Sequence

from kashq.job import Dispatchable
from kashq.workflows.batch import Batch, Member, PendingBatch
from kashq.workflows.chain import Callback, ChainError, PendingChain

__all__ = [
    "Batch",
    "Callback",
    "ChainError",
    "Member",
    "PendingBatch",
    "PendingChain",
    "batch",
    "chain",
]


def chain(jobs: Sequence[Dispatchable]) -> PendingChain:
    """Jobs that run one after another, each once the one before completed:
    ``kashq.chain([A(), B()]).catch(Report()).dispatch()``. A job that fails for
    good ends the chain and runs its ``catch`` callbacks, once each."""
    return PendingChain(jobs)


def batch(jobs: Sequence[Member]) -> PendingBatch:
    """Jobs that run at once and are counted as one:
    ``kashq.batch([...]).then(cb).catch(cb).finally_(cb).dispatch()`` (see :mod:`.batch`)."""
    return PendingBatch(jobs)
