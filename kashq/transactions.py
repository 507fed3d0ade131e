"""The application's open transaction that ``dispatch(using=...)`` writes a job into.

``using`` is an SQLAlchemy ``Session`` (its current transaction), an SQLAlchemy
``Connection``, or a DB-API connection of the drivers kashq installs (psycopg,
sqlite3, PyMySQL). It must be a connection to the database kashq's tables are in:
the job is a row written in that transaction, so it is committed or rolled back
with the application's own writes. kashq never commits, rolls back or closes it.

A Session also says when its transaction ends (its ``after_commit`` and
``after_rollback`` events), which dispatches made with ``after_commit`` wait for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Dialect, event
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from kashq.db.schema import MYSQL
from kashq.exceptions import ConfigError

Params = Mapping[str, Any]
_FAMILIES = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "mysql": "MySQL/MariaDB"}
# DB-API connections by the top module of their class.
_DBAPI_DIALECTS = {"psycopg": "postgresql", "sqlite3": "sqlite", "pymysql": "mysql"}


def _family(dialect_name: str) -> str:
    return "mysql" if dialect_name in MYSQL else dialect_name


class Transaction:
    """Statements run in the caller's transaction, compiled for kashq's database."""

    def __init__(self, using: object) -> None:
        self.using = using
        self._session: Any = None
        self._connection: Connection | None = None
        self._dbapi: Any = None
        if isinstance(using, Connection):
            self._connection, self.family = using, _family(using.dialect.name)
        elif _is_session(using):
            self._session = session = cast(Any, using)
            self._connection = session.connection()  # begins its transaction if none is open
            self.family = _family(self._connection.dialect.name)
        else:
            module = type(using).__module__.split(".")[0]
            if module not in _DBAPI_DIALECTS or isinstance(using, type):
                raise TypeError(
                    f"dispatch(using=...) takes an SQLAlchemy Session or Connection, or a "
                    f"psycopg, sqlite3 or PyMySQL connection, not {type(using).__name__}"
                )
            self._dbapi, self.family = using, _DBAPI_DIALECTS[module]

    def check(self, dialect: Dialect, what: str) -> None:
        """Raise :class:`ConfigError` unless this transaction's database is of ``dialect``'s
        kind (``what``: where kashq keeps the rows, for the message)."""
        if _family(dialect.name) != self.family:
            raise ConfigError(
                f"dispatch(using=...) got a {_FAMILIES[self.family]} connection, but {what} "
                f"is on {_FAMILIES[_family(dialect.name)]}: the job must be written in the "
                "same database as the transaction"
            )

    def execute(
        self, statement: Executable, params: Params | Sequence[Params], dialect: Dialect
    ) -> None:
        """Run ``statement`` (once per parameter set) in the transaction."""
        if self._connection is not None:
            self._connection.execute(statement, params)
            return
        sets = [params] if isinstance(params, Mapping) else list(params)
        if not sets:
            return
        # The columns given, as an INSERT without values() names every column otherwise.
        compiled = cast(
            SQLCompiler,
            cast(ClauseElement, statement).compile(dialect=dialect, column_keys=list(sets[0])),
        )
        cursor = self._dbapi.cursor()
        try:
            for one in sets:
                cursor.execute(compiled.string, _bound(compiled, one))
        finally:
            cursor.close()

    def when_known(self, *, committed: Callable[[], None], rolled_back: Callable[[], None]) -> None:
        """As :meth:`on_end` on a Session; elsewhere, where the end cannot be known,
        ``committed`` now."""
        if self._session is None:
            committed()
        else:
            self.on_end(committed, rolled_back)

    def on_end(self, committed: Callable[[], None], rolled_back: Callable[[], None]) -> None:
        """Call ``committed`` once the transaction commits, or ``rolled_back`` if it rolls
        back (a Session only: a Connection or a DB-API connection does not say)."""
        if self._session is None:
            raise ConfigError(
                "dispatching after the commit needs an SQLAlchemy Session as using= (a "
                f"{type(self.using).__name__} does not say when its transaction commits)"
            )
        done = [False]

        def on_commit(_session: Any) -> None:
            if not done[0]:
                done[0] = True
                committed()

        def on_rollback(_session: Any) -> None:
            if not done[0]:
                done[0] = True
                rolled_back()

        event.listen(self._session, "after_commit", on_commit, once=True)
        event.listen(self._session, "after_rollback", on_rollback, once=True)


def _is_session(using: object) -> bool:
    try:
        from sqlalchemy.orm import Session
    except ImportError:  # pragma: no cover - the ORM ships with SQLAlchemy
        return False
    return isinstance(using, Session)


def _bound(compiled: SQLCompiler, params: Params) -> Any:
    """``params`` as the DB-API takes them for ``compiled`` (positional or named)."""
    values = compiled.construct_params(dict(params))
    if compiled.positiontup is not None:
        return tuple(values[name] for name in compiled.positiontup)
    return values
