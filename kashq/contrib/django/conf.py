"""kashq's settings in a Django project: ``settings.KASHQ`` and Django's own database.

``KASHQ = {"CONNECTION": "redis", "REDIS_URL": ..., "QUEUE": "emails"}`` takes the
names of the ``KASHQ_*`` settings without their prefix (any case). They win over
``KASHQ_*`` environment variables and ``kashq.toml``, like ``kashq.configure()``'s;
command-line flags win over them.

Unless ``DATABASE_URL`` is given (there, in the environment or in ``kashq.toml``),
kashq's database is Django's ``DATABASES["default"]`` (PostgreSQL, SQLite or
MySQL/MariaDB): its tables live beside the app's, and follow Django's test database
while tests run. Dispatching inside ``transaction.atomic()`` waits for the commit
unless ``AFTER_COMMIT`` is False.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from kashq.config import load_settings, use_app_settings
from kashq.exceptions import ConfigError

ALIAS = "default"
ORIGIN = "settings.KASHQ"
# The OPTIONS of an entry that are its driver's connection settings (the rest are Django's).
_CARRIED = {
    "postgresql": frozenset(
        {
            "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "options",
            "connect_timeout", "application_name", "target_session_attrs", "service",
            "passfile", "keepalives", "keepalives_idle",
        }
    ),
    "mysql": frozenset({"charset", "unix_socket", "connect_timeout"}),
    "sqlite": frozenset(),
}  # fmt: skip
_in_memory: dict[str, str] = {}  # an in-memory SQLite database's stand-in file, by name
_DRIVERS = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite", "mysql": "mysql+pymysql"}


@dataclass(frozen=True)
class Followed:
    """What kashq's settings came to: whether its database is Django's own."""

    database_url: str | None  # derived from Django's database (None: given elsewhere)
    same_database: bool  # kashq's tables are in Django's database (atomic writes can join)


def app_settings(kashq: object) -> dict[str, Any]:
    """``settings.KASHQ`` as kashq settings (lower-case names); a one-line error if it
    is not a dict of names."""
    if kashq is None:
        return {}
    if not isinstance(kashq, Mapping) or not all(isinstance(key, str) for key in kashq):
        raise ConfigError(f"{ORIGIN} must be a dict of kashq settings, got {kashq!r:.60}")
    return {key.lower().removeprefix("kashq_"): value for key, value in kashq.items()}


def apply(kashq: object, database: Mapping[str, Any] | None, setup_module: str) -> Followed:
    """Make ``settings.KASHQ`` (plus Django's ``database`` settings dict, unless a
    database URL is given elsewhere) the base of every kashq setting of this process;
    ``setup_module`` goes first in ``imports``, so worker processes set Django up."""
    values = app_settings(kashq)
    use_app_settings({}, ORIGIN)
    elsewhere = load_settings()  # what the environment and kashq.toml say on their own
    if "after_commit" not in values and "after_commit" not in elsewhere.model_fields_set:
        values["after_commit"] = True  # Django's default: on_commit
    imports = values.get("imports", elsewhere.imports)
    if isinstance(imports, str):
        imports = [name.strip() for name in imports.split(",") if name.strip()]
    if isinstance(imports, (list, tuple)):
        values["imports"] = [setup_module, *(name for name in imports if name != setup_module)]
    derived = None
    if "database_url" not in values and "database_url" not in elsewhere.model_fields_set:
        if database is None:
            raise ConfigError(
                f"Django has no {ALIAS!r} database: set KASHQ['DATABASE_URL'] for kashq's tables"
            )
        derived = values["database_url"] = database_url(database)
    use_app_settings(values, ORIGIN)
    stand_in = derived is not None and derived.removeprefix("sqlite:///") in _in_memory.values()
    return Followed(derived, derived is not None and not stand_in)


def database_url(database: Mapping[str, Any]) -> str:
    """The SQLAlchemy URL of a Django ``DATABASES`` entry (an in-memory SQLite one, a
    test database, becomes a file in a temporary directory: kashq's workers need a file)."""
    engine = str(database.get("ENGINE", ""))
    vendor = engine.rsplit(".", 1)[-1].removesuffix("3")  # sqlite3 -> sqlite
    vendor = {"postgresql_psycopg2": "postgresql", "postgis": "postgresql"}.get(vendor, vendor)
    if vendor not in _DRIVERS:
        raise ConfigError(
            f"kashq uses Django's database on PostgreSQL, SQLite or MySQL/MariaDB, not "
            f"{engine or 'an ENGINE-less one'}: set KASHQ['DATABASE_URL']"
        )
    name = str(database.get("NAME") or "")
    if vendor == "sqlite":
        if not name or name == ":memory:" or "mode=memory" in name:
            if name not in _in_memory:
                directory = tempfile.mkdtemp(prefix="kashq-django-")
                atexit.register(shutil.rmtree, directory, ignore_errors=True)
                _in_memory[name] = os.path.join(directory, "kashq.sqlite3")
            name = _in_memory[name]
        return f"sqlite:///{os.path.abspath(name)}"
    port, host = database.get("PORT"), str(database.get("HOST") or "")
    options = database.get("OPTIONS") or {}
    query = {k: str(v) for k, v in options.items() if k in _CARRIED[vendor]}
    if host.startswith("/"):  # a Unix socket's directory (PostgreSQL) or path (MySQL)
        query["host" if vendor == "postgresql" else "unix_socket"] = host
        host = ""
    url = URL.create(
        _DRIVERS[vendor],
        username=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=host or None,
        port=int(port) if port else None,
        database=name or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)
