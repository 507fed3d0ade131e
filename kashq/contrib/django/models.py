"""No tables: the admin's entry for kashq's dashboard, and the permission to act in it."""

from __future__ import annotations

from typing import ClassVar

from django.db import models


class Dashboard(models.Model):
    """The admin's "kashq > Dashboard" (kashq keeps its own tables, see the app's docs)."""

    class Meta:
        managed = False
        verbose_name = verbose_name_plural = "dashboard"
        default_permissions = ()
        permissions: ClassVar = [
            ("operate_dashboard", "Can retry, cancel and pause jobs in the dashboard")
        ]
