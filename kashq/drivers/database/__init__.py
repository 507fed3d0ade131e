"""The database driver (SQLite, PostgreSQL, MySQL/MariaDB): :class:`DatabaseDriver`.

How it works is told in :mod:`.driver`; its SQL statements are built in
:mod:`.statements`.
"""

from kashq.drivers.database.driver import DatabaseDriver

__all__ = ["DatabaseDriver"]
