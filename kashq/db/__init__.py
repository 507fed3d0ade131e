"""kashq's SQL storage: the table schema, engines, and Alembic migrations.

Used by the database driver (:mod:`kashq.drivers.database`) and the
database failed-job store (:mod:`kashq.failed.database`). SQLAlchemy and
Alembic are imported only under this package and those two modules.
"""
