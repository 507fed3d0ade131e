"""A Django project for kashq.contrib.django's checks, run by Django's own test runner
(``tests/integration/test_contrib_django.py`` starts it on SQLite and on PostgreSQL)."""
