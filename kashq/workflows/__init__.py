"""Workflows: Laravel's Bus for kashq. Chains (:mod:`.chain`): jobs run one after another."""

from __future__ import annotations

from collections.abc import Sequence

from kashq.job import Dispatchable
from kashq.workflows.chain import Callback, ChainError, PendingChain

__all__ = ["Callback", "ChainError", "PendingChain", "chain"]


def chain(jobs: Sequence[Dispatchable]) -> PendingChain:
    """Jobs that run one after another, each once the one before completed:
    ``kashq.chain([A(), B()]).catch(Report()).dispatch()``. A job that fails for
    good ends the chain and runs its ``catch`` callbacks, once each."""
    return PendingChain(jobs)
