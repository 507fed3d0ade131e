"""The Django app's start-up: settings, job modules, transactions, connections, tables."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules

from kashq.contrib.django import conf
from kashq.exceptions import ConfigError
from kashq.jobevents import EventKind, JobEvent, listen_to_every_worker
from kashq.manager import configure
from kashq.manager import manager as current_manager

SETUP_MODULE = "kashq.contrib.django.setup"


class KashqConfig(AppConfig):
    name = "kashq.contrib.django"
    label = "kashq"
    verbose_name = "kashq"
    default_auto_field = "django.db.models.AutoField"
    followed: conf.Followed

    def ready(self) -> None:
        self.follow(connections.settings.get(conf.ALIAS))
        autodiscover_modules("jobs")
        listen_to_every_worker(close_old_connections)
        post_migrate.connect(migrate_kashq, sender=self)
        connection_created.connect(self.moved, dispatch_uid="kashq-follows-django")

    def moved(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        """A connection to the database kashq follows opened: when Django's settings for it
        changed since (the test runner's database, or a parallel runner worker's clone
        of it), kashq follows them, and lets go before the runner drops it."""
        if connection.alias != conf.ALIAS or self.followed.database_url is None:
            return
        if conf.database_url(connection.settings_dict) != self.followed.database_url:
            self.follow(connection.settings_dict)
            _let_go_before_destroyed(connection.creation)

    def follow(self, database: dict[str, Any] | None) -> None:
        """Configure kashq from ``settings.KASHQ`` and Django's ``database`` settings."""
        from django.conf import settings

        from kashq.contrib.django.transaction import open_block
        from kashq.dispatcher import use_ambient_transaction

        try:
            self.followed = conf.apply(getattr(settings, "KASHQ", None), database, SETUP_MODULE)
        except ConfigError as exc:  # Django's word for it, with kashq's one line
            raise ImproperlyConfigured(str(exc)) from None
        configure()
        use_ambient_transaction(open_block(conf.ALIAS, self.followed.same_database))


def close_old_connections(event: JobEvent) -> None:
    """Before and after each job, close this thread's Django connections that are broken
    or past ``CONN_MAX_AGE`` (Django's request signals do the same; not inside an open
    ``atomic()`` block, where a test runs its jobs)."""
    if event.kind is not EventKind.STARTED and event.kind is not EventKind.RAN:
        return
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def migrate_kashq(sender: KashqConfig, using: str, verbosity: int = 1, **kwargs: Any) -> None:
    """After ``manage.py migrate`` (and the test runner's) on the database kashq follows:
    kashq's own migrations, on the database Django just migrated (a test database too)."""
    if using != conf.ALIAS or "plan" not in kwargs:  # not after a flush: after migrate only
        return
    from kashq.db import migrate
    from kashq.db.engine import safe_url

    sender.moved(None, connections[using])  # migrate connected already: followed then
    settings = current_manager().settings
    url, prefix = settings.database_url, settings.table_prefix
    before = migrate.current_revision(url, table_prefix=prefix)
    after = migrate.upgrade(url, table_prefix=prefix)
    stdout = kwargs.get("stdout")
    if verbosity >= 1 and stdout is not None:
        change = "up to date" if before == after else f"from {before or 'nothing'}"
        stdout.write(f"  kashq's tables in {safe_url(url)}: revision {after} ({change})\n")


def _let_go_before_destroyed(creation: Any) -> None:
    """Close kashq's connections before the test runner drops its test database (a
    PostgreSQL database in use cannot be dropped)."""
    destroy = creation.destroy_test_db
    if getattr(destroy, "lets_kashq_go", False):
        return

    def destroy_test_db(*args: Any, **kwargs: Any) -> Any:
        current_manager().close()
        return destroy(*args, **kwargs)

    destroy_test_db.lets_kashq_go = True  # type: ignore[attr-defined]
    creation.destroy_test_db = destroy_test_db
