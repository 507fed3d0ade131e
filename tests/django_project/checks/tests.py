"""kashq.contrib.django's checks, under Django's test runner (see the project's docstring)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import TransactionTestCase
from django_project.checks.jobs import Fails, MarkSeen, OnlyOne, UsesConnection
from django_project.checks.models import Note

import kashq

QUEUE = "default"


def ready() -> int:
    """How many jobs wait in the default queue (read by kashq, outside Django's transaction)."""
    manager = kashq.manager()
    return manager.connection().sizes([QUEUE])[QUEUE].ready


def run_all() -> kashq.WorkerStats:
    manager = kashq.manager()
    worker = manager.worker(queues=(QUEUE,), tries=1)
    while worker.run_next() is not None:
        pass
    manager.write_records()
    return worker.stats


class EmptyQueue:
    def setUp(self) -> None:
        kashq.manager().clear(QUEUE)


class AtomicBlocks(EmptyQueue, TransactionTestCase):
    def test_a_dispatch_in_a_block_is_sent_when_it_commits(self) -> None:
        with transaction.atomic():
            note = Note.objects.create(text="hello")
            handle = MarkSeen(note_id=note.pk).dispatch()
            self.assertEqual(ready(), 0)
        self.assertEqual(ready(), 1)
        self.assertEqual(run_all().completed, 1)
        self.assertTrue(Note.objects.get(pk=note.pk).seen_by_job)
        self.assertEqual(kashq.get_job(handle.id).status().state, "completed")

    def test_a_rolled_back_block_sends_nothing_and_frees_a_unique_claim(self) -> None:
        with self.assertRaises(RuntimeError), transaction.atomic():
            self.assertIsNotNone(OnlyOne(key="k").dispatch())
            raise RuntimeError("the request failed")
        self.assertEqual(ready(), 0)
        self.assertIsNotNone(OnlyOne(key="k").dispatch())  # the claim went with the block
        self.assertIsNone(OnlyOne(key="k").dispatch())
        self.assertEqual(ready(), 1)

    def test_a_rolled_back_savepoint_drops_its_jobs_only(self) -> None:
        with transaction.atomic():
            MarkSeen(note_id=1).dispatch()
            with self.assertRaises(RuntimeError), transaction.atomic():
                MarkSeen(note_id=2).dispatch()
                raise RuntimeError("the inner part failed")
        self.assertEqual(ready(), 1)

    def test_chains_and_batches_wait_for_the_commit_too(self) -> None:
        with transaction.atomic():
            kashq.chain([MarkSeen(note_id=1), MarkSeen(note_id=2)]).dispatch()
            batch = kashq.batch([MarkSeen(note_id=3), MarkSeen(note_id=4)]).dispatch()
            self.assertEqual(ready(), 0)
        self.assertEqual(ready(), 3)
        self.assertEqual(kashq.find_batch(batch.id).total, 2)

    def test_outside_a_block_a_dispatch_is_sent_at_once(self) -> None:
        MarkSeen(note_id=1).dispatch()
        self.assertEqual(ready(), 1)


class SameTransaction(EmptyQueue, TransactionTestCase):
    """``before_commit()``: the job's row is written in Django's own transaction."""

    def test_the_job_commits_with_the_block(self) -> None:
        with transaction.atomic():
            note = Note.objects.create(text="together")
            MarkSeen(note_id=note.pk).before_commit().dispatch()
        self.assertEqual(ready(), 1)
        self.assertEqual(run_all().completed, 1)
        self.assertTrue(Note.objects.get(pk=note.pk).seen_by_job)

    def test_the_job_rolls_back_with_the_block(self) -> None:
        with self.assertRaises(RuntimeError), transaction.atomic():
            MarkSeen(note_id=1).before_commit().dispatch()
            raise RuntimeError("the request failed")
        self.assertEqual(ready(), 0)


class StaleConnections(EmptyQueue, TransactionTestCase):
    def test_a_worker_closes_django_s_connection_after_each_job(self) -> None:
        UsesConnection().dispatch()
        self.assertEqual(run_all().completed, 1)
        self.assertIsNone(connection.connection)  # CONN_MAX_AGE = 0: closed, as after a request


class Commands(EmptyQueue, TransactionTestCase):
    def test_call_command_runs_a_kashq_command(self) -> None:
        MarkSeen(note_id=1).dispatch()
        call_command("kashq", "queue:clear", "--queue", QUEUE, "--force")
        self.assertEqual(ready(), 0)


class AdminDashboard(EmptyQueue, TransactionTestCase):
    """A TransactionTestCase: on SQLite a TestCase's open transaction would hold the write
    lock of the database kashq writes its jobs to."""

    url = "/admin/kashq/dashboard/"

    def user(self, name: str, *, staff: bool = True, operate: bool = False) -> User:
        user = User.objects.create_user(name, password="pw", is_staff=staff)
        if operate:
            user.user_permissions.add(Permission.objects.get(codename="operate_dashboard"))
        return user

    def post(self, url: str, **form: str) -> HttpResponse:
        """A form POST as a browser sends it."""
        return self.client.post(url, urlencode(form), "application/x-www-form-urlencoded")

    def test_anonymous_and_non_staff_users_are_sent_to_the_admin_login(self) -> None:
        self.assertRedirects(self.client.get(self.url), f"/admin/login/?next={self.url}")
        self.client.force_login(self.user("visitor", staff=False))
        self.assertEqual(self.client.get(self.url).status_code, 302)

    def test_the_admin_index_links_to_the_dashboard(self) -> None:
        self.client.force_login(self.user("staff"))
        self.assertContains(self.client.get("/admin/"), f'href="{self.url}"')

    def test_staff_see_every_screen_and_only_the_permission_acts(self) -> None:
        Fails().dispatch()
        self.assertEqual(run_all().failed, 1)
        self.client.force_login(self.user("reader"))
        page = self.client.get(self.url + "failed")
        self.assertContains(page, "this job fails on purpose")
        self.assertNotContains(page, "/actions/retry")

        self.client.force_login(self.user("operator", operate=True))
        page = self.client.get(self.url + "failed")
        self.assertContains(page, f"{self.url}actions/retry")
        failed_id = re.search(r'name="id" value="([^"]+)"', page.content.decode()).group(1)
        token = self.client.cookies["kashq_csrf"].value
        refused = self.post(self.url + "actions/retry", id=failed_id)
        self.assertEqual(refused.status_code, 403)  # the dashboard's own CSRF check
        retried = self.post(self.url + "actions/retry", id=failed_id, csrf=token)
        self.assertEqual(retried.status_code, 303)
        self.assertEqual(ready(), 1)
