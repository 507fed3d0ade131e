"""Imported first by each ``queue:work`` worker process of a Django project: sets Django up
(``DJANGO_SETTINGS_MODULE``, inherited from ``manage.py``), which configures kashq from
``settings.KASHQ`` and imports every app's ``jobs`` module."""

from __future__ import annotations

import django
from django.apps import apps

if not apps.ready:
    django.setup()
