"""End-to-end tests of ``queue:job``: one job by id, queued, completed or failed.

Each runs in-process and as the installed executable (see ``conftest.py``) on
the SQLite default: the jobs are dispatched and run by a worker in a Python
subprocess with the test's settings, as an application would.
"""

from __future__ import annotations

import json
import textwrap

from tests.e2e.conftest import Cli, assert_one_line_error

JOBS = textwrap.dedent(
    """
    import kashq

    class Thumbnail(kashq.Job):
        path: str

        def handle(self) -> dict:
            self.progress(1.0, "1 of 1")
            return {"path": self.path.replace(".jpg", "-thumb.jpg")}

    class Broken(kashq.Job):
        def handle(self) -> None:
            raise kashq.FailJob("no such album")
    """
)


def _dispatch(kashq_cli: Cli, code: str) -> str:
    (kashq_cli.cwd / "jobs.py").write_text(JOBS)
    done = kashq_cli.python(f"import jobs, kashq\n{code}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_job_shows_a_queued_job_with_its_payload(kashq_cli: Cli, db_url: str) -> None:
    job_id = _dispatch(kashq_cli, "print(jobs.Thumbnail(path='cat.jpg').dispatch())")

    run = kashq_cli(["queue:job", job_id])

    assert run.exit_code == 0, run.stderr
    lines = [line.rstrip() for line in run.stdout.splitlines()]
    assert f"id          {job_id}" in lines
    assert "state       queued" in lines
    assert "job         jobs.Thumbnail" in lines
    assert '  "path": "cat.jpg"' in lines
    assert "dispatched" in run.stdout  # the event timeline


def test_job_json_of_a_completed_job_has_its_result_progress_and_events(
    kashq_cli: Cli, db_url: str
) -> None:
    job_id = _dispatch(
        kashq_cli,
        "h = jobs.Thumbnail(path='cat.jpg').dispatch()\n"
        "kashq.manager().worker(stop_when_empty=True).run(1)\n"
        "kashq.manager().close()\n"
        "print(h)",
    )

    run = kashq_cli(["queue:job", job_id, "--json"])

    assert run.exit_code == 0, run.stderr
    data = json.loads(run.stdout)
    status = data["status"]
    assert (status["state"], status["attempts"], status["progress"]) == ("completed", 1, 1.0)
    assert status["message"] == "1 of 1"
    assert data["result"] == {"path": "cat-thumb.jpg"}
    assert [e["type"] for e in data["events"]] == ["dispatched", "started", "progress", "completed"]


def test_job_of_a_failed_job_shows_its_error_reason_and_payload(
    kashq_cli: Cli, db_url: str
) -> None:
    job_id = _dispatch(
        kashq_cli,
        "h = jobs.Broken().dispatch()\n"
        "kashq.manager().worker(stop_when_empty=True).run(1)\n"
        "kashq.manager().close()\n"
        "print(h)",
    )

    run = kashq_cli(["queue:job", job_id])

    assert run.exit_code == 0, run.stderr
    lines = [line.rstrip() for line in run.stdout.splitlines()]
    assert "state       failed" in lines
    assert "error       no such album" in lines
    assert "reason      fail_job" in lines
    assert "Payload:" in lines


def test_job_of_an_unknown_id_is_a_one_line_error(kashq_cli: Cli, db_url: str) -> None:
    _dispatch(kashq_cli, "print(jobs.Thumbnail(path='a.jpg').dispatch())")  # the tables exist

    run = kashq_cli(["queue:job", "00000000-0000-4000-8000-000000000000"])

    assert run.exit_code == 1
    line = assert_one_line_error(run)
    assert "no job 00000000-0000-4000-8000-000000000000 on connection 'database'" in line
