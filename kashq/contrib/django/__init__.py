"""kashq as a Django app: ``INSTALLED_APPS += ["kashq.contrib.django"]``.

- **Settings** from ``settings.KASHQ`` (the ``KASHQ_*`` names without the prefix);
  kashq's tables in Django's default database unless ``DATABASE_URL`` says
  otherwise (:mod:`kashq.contrib.django.conf`).
- **Tables**: ``manage.py migrate`` brings them up to date with kashq's own
  migrations (also ``manage.py kashq migrate``).
- **Jobs**: each installed app's ``jobs`` module is imported at start-up, in the
  web process and in every worker.
- **Commands**: ``manage.py kashq <command>`` is the ``kashq`` command
  (``queue:work``, ``queue:failed``, ...), with the project's settings.
- **Transactions**: a dispatch inside ``transaction.atomic()`` is sent once the
  block commits (:mod:`kashq.contrib.django.transaction`).
- **Connections**: around each job a worker closes Django's connections that
  are broken or past ``CONN_MAX_AGE``, as Django does around each request.
- **Admin**: "kashq > Dashboard" opens kashq's dashboard inside the admin, for
  staff; acting on jobs (retry, cancel, pause) takes the
  ``kashq.operate_dashboard`` permission.
- **Tests**: the ``kashq_fake`` and ``kashq_worker`` pytest fixtures
  (:mod:`kashq.contrib.django.fixtures`).
"""
