"""Found at start-up: this app's ``jobs`` module."""

from django.db import connection
from django_project.checks.models import Note

from kashq import Job


class MarkSeen(Job):
    note_id: int

    def handle(self) -> None:
        Note.objects.filter(pk=self.note_id).update(seen_by_job=True)


class OnlyOne(Job):
    unique_for = 60.0
    key: str

    def unique_id(self) -> str:
        return self.key

    def handle(self) -> None:
        pass


class Fails(Job):
    def handle(self) -> None:
        raise RuntimeError("this job fails on purpose")


class UsesConnection(Job):
    """Leaves Django's connection open, as any job using the ORM does."""

    def handle(self) -> bool:
        connection.ensure_connection()
        return True
