"""Dispatching inside ``transaction.atomic()``: the job joins Django's transaction.

While a block is open on the database alias kashq follows, a dispatch without
``using=`` is sent once the outermost block commits (``transaction.on_commit``)
and never if it rolls back: the default, ``KASHQ["AFTER_COMMIT"]`` on. With it off,
or with ``job.before_commit()``, the job's row is written in the transaction itself
(kashq's database connection, or the outbox on Redis), which needs kashq's tables
in Django's database.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

from django.db import connections
from django.db import transaction as django_transaction
from sqlalchemy import Dialect
from sqlalchemy.sql import Executable

from kashq.exceptions import ConfigError
from kashq.transactions import Params, Transaction


class AtomicBlock(Transaction):
    """The open ``atomic()`` block of Django's database ``alias``."""

    def __init__(self, alias: str, *, same_database: bool) -> None:
        self.using = connection = connections[alias]
        self.alias = alias
        self._session = self._connection = None
        self.family = connection.vendor  # postgresql, sqlite, mysql: kashq's names too
        self._same_database = same_database
        self._dbapi = None

    def execute(
        self, statement: Executable, params: Params | Sequence[Params], dialect: Dialect
    ) -> None:
        """Run ``statement`` on Django's own DB-API connection, in its transaction."""
        if not self._same_database:
            raise ConfigError(
                "a job written inside transaction.atomic() needs kashq's tables in Django's "
                "database, and they are elsewhere (KASHQ['DATABASE_URL'], or a file beside "
                "an in-memory SQLite test database): send it after the commit"
            )
        connection = connections[self.alias]
        connection.ensure_connection()
        self._dbapi = connection.connection
        super().execute(statement, params, dialect)

    def when_known(self, *, committed: Callable[[], None], rolled_back: Callable[[], None]) -> None:
        self.on_end(committed, rolled_back)

    def on_end(self, committed: Callable[[], None], rolled_back: Callable[[], None]) -> None:
        """``committed`` once the outermost block commits; ``rolled_back`` when Django
        drops the callback instead (a rollback of the block, or of a savepoint holding it)."""
        done = [False]

        def on_commit() -> None:
            done[0] = True
            committed()

        django_transaction.on_commit(on_commit, using=self.alias)
        # Django keeps on-commit callbacks in a list it empties when it runs them or
        # rolls back: the callback dying unrun is the rollback.
        dropped = weakref.finalize(on_commit, lambda: None if done[0] else rolled_back())
        dropped.atexit = False  # a block still open at exit: nothing to free, no I/O then


def open_block(alias: str, same_database: bool) -> Callable[[], AtomicBlock | None]:
    """What :func:`kashq.dispatcher.use_ambient_transaction` takes: the open block of
    ``alias`` in this thread, or None outside one."""

    def find() -> AtomicBlock | None:
        if not connections[alias].in_atomic_block:
            return None
        return AtomicBlock(alias, same_database=same_database)

    return find
