"""Engines, and the boundary where SQLAlchemy errors become kashq errors.

:func:`make_engine` builds an engine tuned for kashq: a SQLite file gets WAL
journaling, a busy timeout and ``BEGIN IMMEDIATE`` write transactions (so
several worker processes and a dispatcher share one file without "database is
locked" surprises), and its directory must exist (kashq never creates one: a
typo must not scatter databases around); MySQL/MariaDB run at READ COMMITTED
so ``SKIP LOCKED`` reservations do not take gap locks. A URL without a driver
gets the one kashq's extras install (``postgres://`` and ``postgresql://`` use
psycopg, ``mysql://`` PyMySQL), a missing driver is a line saying what to
install, and PostgreSQL and MySQL connections give up after
``CONNECT_TIMEOUT_S`` (the URL's own ``connect_timeout`` wins), so a
black-holed server is an error line rather than a hang. An engine carries
the install's table prefix (``KASHQ_TABLE_PREFIX``), so whatever shares it
uses the same tables.

:class:`Database` is what the driver and the stores hold: it runs a
unit of work in one transaction, creates or checks the schema on first use,
retries once on a dropped connection (every kashq statement is safe to
repeat), and turns SQLAlchemy's errors into one-line kashq errors that never
show a password.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    make_url,
    select,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from kashq.db.schema import MYSQL, tables
from kashq.exceptions import ConfigError, KashqError
from kashq.redact import hide_password, hide_secrets_in

SQLITE_BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5
"""How long connecting to PostgreSQL or MySQL may take (``?connect_timeout=`` overrides)."""
# The driver a URL without one gets, and what installs each driver.
_DEFAULT_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                    "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}  # fmt: skip
_INSTALL = {"psycopg": "pip install 'kashq[postgres]'", "pymysql": "pip install 'kashq[mysql]'"}
_AUTOCOMMIT = "kashq_autocommit"
PREFIX_OPTION = "kashq_table_prefix"
"""The engine execution option (and Alembic context option) naming the table prefix."""
T = TypeVar("T")


def make_engine(url: str | URL, *, table_prefix: str = "", **engine_kwargs: Any) -> Engine:
    """An engine for ``url`` with kashq's per-database settings (see the module docstring).

    It carries ``table_prefix`` (see :func:`table_prefix_of`).
    """
    engine_kwargs.setdefault("execution_options", {})[PREFIX_OPTION] = table_prefix
    try:
        parsed = with_driver(make_url(url))
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            _check_sqlite_directory(parsed)
        elif backend in MYSQL:
            engine_kwargs.setdefault("isolation_level", "READ COMMITTED")
        handshake_reads_bounded = _bound_connecting(parsed, engine_kwargs)
        engine = create_engine(parsed, **engine_kwargs)
    except ImportError as exc:  # the URL's driver is not installed
        raise ConfigError(_missing_driver(url, exc)) from None
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(f"invalid database URL {safe_url(url)}: {describe(url, exc)}") from None
    if backend == "sqlite":
        _tune_sqlite(engine)
    elif handshake_reads_bounded:
        _unbound_reads_once_connected(engine)
    return engine


def _bound_connecting(url: URL, engine_kwargs: dict[str, Any]) -> bool:
    """Give PostgreSQL and MySQL ``CONNECT_TIMEOUT_S`` to connect (the URL's own value wins).

    libpq's ``connect_timeout`` covers the whole handshake; PyMySQL's only the
    TCP connect, so its reads are bounded too while connecting (True: see
    :func:`_unbound_reads_once_connected`), else a server that accepts and
    never greets hangs the caller.
    """
    backend = url.get_backend_name()
    if backend != "postgresql" and backend not in MYSQL:
        return False
    connect_args = engine_kwargs.setdefault("connect_args", {})
    given = url.query.get("connect_timeout")
    if given is None:
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    if backend == "postgresql" or "read_timeout" in url.query or "read_timeout" in connect_args:
        return False
    connect_args["read_timeout"] = float(given) if isinstance(given, str) else CONNECT_TIMEOUT_S
    return True


def _unbound_reads_once_connected(engine: Engine) -> None:
    """Let a connected PyMySQL connection's reads wait as long as the server takes.

    As without ``read_timeout``: a statement may rightly wait on a row lock.
    PyMySQL has no public setter; it applies this attribute before each read.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if hasattr(dbapi_connection, "_read_timeout"):
            dbapi_connection._read_timeout = None


def table_prefix_of(engine: Engine) -> str:
    """The table prefix ``engine`` carries ("" if none).

    The one value a driver hands the stores sharing its storage (events,
    locks) is its engine: the prefix travels with it, so they use its tables.
    """
    return str(engine.get_execution_options().get(PREFIX_OPTION, ""))


def with_table_prefix(engine: Engine, prefix: str) -> Engine:
    """``engine``, carrying ``prefix`` (a view sharing its pool, if it carried another)."""
    if table_prefix_of(engine) == prefix:
        return engine
    return engine.execution_options(**{PREFIX_OPTION: prefix})


def with_driver(url: URL) -> URL:
    """``url`` with the driver kashq installs when it names none (``postgres://`` too)."""
    driver = _DEFAULT_DRIVERS.get(url.drivername)
    return url if driver is None else url.set(drivername=driver)


def require_existing(url: str | URL) -> None:
    """Raise :class:`ConfigError` if ``url`` names a SQLite file that does not exist.

    For commands that read or change what is there: opening the file would
    create an empty database, and someone in the wrong directory (the default
    path is relative) would see empty queues instead of their mistake.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigError(
            f"no kashq database at {safe_url(url)}: {path.absolute()} does not exist "
            "(nothing was dispatched here yet; `kashq migrate` creates it)"
        )


def _missing_driver(url: str | URL, exc: ImportError) -> str:
    module = (exc.name or "").split(".")[0]
    fix = _INSTALL.get(module, f"pip install {module}" if module else "install its driver")
    return f"the database URL {safe_url(url)} needs the {module or '?'} package: {fix}"


def sqlite_path(url: str | URL) -> Path | None:
    """The file a SQLite URL names, or None (another database, memory, a ``file:`` URI)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None  # make_engine reports it
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return None if database.startswith("file:") else Path(database).expanduser()


def safe_url(target: Engine | str | URL) -> str:
    """The URL of ``target`` with any password replaced by ``***``."""
    return hide_password(_text(target))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (the DBAPI's own, if it wraps one)."""
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = str(source).strip().splitlines()
    return lines[0].strip() if lines else type(source).__name__


def describe(target: Engine | str | URL, exc: BaseException) -> str:
    """:func:`first_line` of ``exc`` with the password of ``target`` (if any) masked."""
    return hide_secrets_in(first_line(exc), _text(target))


def _text(target: Engine | str | URL) -> str:
    """The URL as given: a str is not parsed (a malformed one must be hidden too)."""
    url = target.url if isinstance(target, Engine) else target
    return url if isinstance(url, str) else url.render_as_string(hide_password=False)


def _check_sqlite_directory(url: URL) -> None:
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise ConfigError(
            f"the directory {path.parent} of the SQLite database {safe_url(url)} does not "
            "exist: create it first (kashq creates the file, never a directory)"
        )


def _tune_sqlite(engine: Engine) -> None:
    """WAL, busy timeout, and kashq (not the sqlite3 module) deciding when to BEGIN."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed job survives a power cut too, not only a killed
            # process (NORMAL would be about twice as fast, and could lose the
            # last commits on an OS crash). No job lost comes first.
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so a transaction never has
        # to upgrade a read lock (which fails at once instead of waiting).
        if not conn.get_execution_options().get(_AUTOCOMMIT, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def statement_mode(conn: Connection) -> Connection:
    """Let each statement on ``conn`` commit by itself, saving BEGIN/COMMIT round trips.

    For work that is one statement (atomic on its own) or a read. MySQL keeps
    its implicit transactions: switching autocommit there costs round trips.
    """
    if conn.dialect.name == "sqlite":
        conn.execution_options(**{_AUTOCOMMIT: True})
    elif conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


class Database:
    """An engine used by one kashq component, with its error type, tables and schema check.

    ``error`` is the exception raised for any database failure
    (:class:`~kashq.exceptions.DriverError` for the driver,
    :class:`~kashq.exceptions.FailedStoreError` for the store). ``tables`` are
    kashq's tables under ``table_prefix``; by default, the prefix a given
    engine carries (none for a URL).
    """

    def __init__(
        self,
        engine_or_url: Engine | str | URL,
        *,
        error: type[KashqError],
        table_prefix: str | None = None,
    ) -> None:
        self._error = error
        try:
            if isinstance(engine_or_url, Engine):
                prefix = table_prefix_of(engine_or_url) if table_prefix is None else table_prefix
                self.tables = tables(prefix)
                self.engine, self._owned = with_table_prefix(engine_or_url, prefix), False
            else:
                self.tables = tables(table_prefix or "")
                self.engine = make_engine(engine_or_url, table_prefix=self.tables.prefix)
                self._owned = True
        except ConfigError as exc:
            raise error(str(exc)) from None
        self.dialect: str = self.engine.dialect.name
        self._ready = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return safe_url(self.engine)

    def run(self, work: Callable[[Connection], T], *, what: str, atomic: bool = True) -> T:
        """Run ``work`` and return its result.

        ``atomic``: in one transaction, committed if ``work`` returns. Otherwise
        each statement commits by itself (for single statements and reads).
        """
        self.ensure_schema()
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    if not atomic:
                        statement_mode(conn)
                    with conn.begin():
                        return work(conn)
            except DBAPIError as exc:
                # A pooled connection the server dropped (restart, proxy cut):
                # the pool has discarded it, so one retry gets a fresh one.
                if attempt == 1 and exc.connection_invalidated:
                    continue
                raise self.error(what, exc) from exc
            except SQLAlchemyError as exc:
                raise self.error(what, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def error(self, what: str, exc: BaseException) -> KashqError:
        """A one-line kashq error for ``exc`` raised while doing ``what``."""
        return self._error(f"{what} failed on {self.url}: {describe(self.engine, exc)}")

    def ensure_schema(self) -> None:
        """Create (SQLite) or check (others) kashq's tables, once per instance."""
        if self._ready:
            return
        from kashq.db import migrate

        with self._lock:
            if self._ready:
                return
            try:
                migrate.ensure_schema(self.engine)
            except ConfigError as exc:
                raise self._error(str(exc)) from None
            except SQLAlchemyError as exc:
                raise self.error("checking the schema", exc) from exc
            self._ready = True

    def ensure_schema_beside(self) -> None:
        """:meth:`ensure_schema` before a write inside the caller's open transaction.

        On SQLite that transaction holds the database's only write lock, so tables
        still to be created are a one-line error at once, not a wait for that lock.
        """
        if not self._ready and self.dialect == "sqlite":
            from kashq.db import migrate

            if migrate.current_revision(self.engine) != migrate.head_revision():
                raise self._error(
                    f"kashq's tables are not in {self.url} yet: run `kashq migrate` (or use "
                    "kashq once outside a transaction) before dispatching inside one, whose "
                    "write lock the migration would wait for"
                )
        self.ensure_schema()

    def close(self) -> None:
        """Dispose of the engine's connections if this object created the engine."""
        if self._owned:
            self.engine.dispose()


def listening_connection(engine: Engine, channel: str) -> Any:
    """A psycopg connection of its own, autocommit, that has run ``LISTEN "channel"``.

    Made from the engine's URL outside its pool (a listener holds it for as long as it
    listens). ``channel`` must be a table prefix and a fixed name: it is spliced in.
    """
    dialect = engine.dialect
    cargs, cparams = dialect.create_connect_args(engine.url)
    cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    conn = dialect.connect(*cargs, **cparams)
    try:
        conn.autocommit = True
        conn.execute(f'LISTEN "{channel}"')
    except BaseException:
        conn.close()
        raise
    return conn


def delete_in_chunks(
    db: Database, table: Table, where: ColumnElement[bool], *, chunk_size: int, what: str
) -> int:
    """Delete ``table``'s rows matching ``where``, ``chunk_size`` ids per transaction.

    One short transaction per chunk, so pruning a large table never holds a
    long lock. ``table`` must have an ``id`` column. Returns how many went.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ids_of_chunk = select(table.c.id).where(where).order_by(table.c.id).limit(chunk_size)

    def delete_chunk(conn: Connection) -> int:
        ids = list(conn.execute(ids_of_chunk).scalars())
        if ids:
            conn.execute(delete(table).where(table.c.id.in_(ids)))
        return len(ids)

    removed = 0
    while True:
        deleted = db.run(delete_chunk, what=what)
        removed += deleted
        if deleted < chunk_size:
            return removed
