"""The pieces of queue:work that need no processes: slots, the spec, imports, output lines."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import pytest

from kashq.drivers.base import Reservation
from kashq.drivers.memory import MemoryDriver
from kashq.envelope import Envelope
from kashq.imports import ImportFailed, import_job_modules
from kashq.jobevents import EventKind, JobEvent
from kashq.supervisor import held
from kashq.supervisor.lines import JobLines, delay, duration
from kashq.supervisor.slots import _DATA_AT, DATA_BYTES, SLOT_BYTES, Slots, SlotState
from kashq.supervisor.spec import Output, WorkSpec
from kashq.supervisor.supervisor import Supervisor, SupervisorOptions

RES = Reservation("job-1", "emails", '{"v":1}', 2, "token-1")


@pytest.fixture
def slots() -> Iterator[Slots]:
    made = Slots.create(3)
    yield made
    made.close()


# --------------------------------------------------------------------------- slots


def test_a_fresh_slot_is_idle(slots: Slots) -> None:
    view = slots.read(1)

    assert view is not None
    assert view.state is SlotState.IDLE
    assert view.reservation is None
    assert not view.timed_out


def test_running_slot_holds_the_reservation_and_deadline(slots: Slots) -> None:
    writer = slots.writer(1)

    writer.running(RES, started=100.0, timeout_s=5.0)

    view = slots.read(1)
    assert view is not None
    assert view.state is SlotState.RUNNING
    assert view.reservation == RES
    assert (view.started, view.timeout_s, view.deadline) == (100.0, 5.0, 105.0)
    assert slots.read(0).state is SlotState.IDLE  # type: ignore[union-attr]


def test_finished_jobs_are_counted_and_a_completed_one_keeps_its_reservation(slots: Slots) -> None:
    writer = slots.writer(2)
    writer.running(RES, 1.0, None)
    writer.finished(completed=True, failed=False)
    writer.running(RES, 2.0, None)
    writer.finished(completed=False, failed=True)

    view = slots.read(2)
    assert view is not None
    assert view.state is SlotState.IDLE
    assert (view.processed, view.failed) == (2, 1)
    writer.running(RES, 3.0, None)
    writer.finished(completed=True, failed=False)
    completed = slots.read(2)
    assert completed is not None and completed.state is SlotState.COMPLETED
    assert completed.reservation == RES


def test_a_replacement_writer_carries_on_the_counters(slots: Slots) -> None:
    first = slots.writer(0)
    first.running(RES, 1.0, None)
    first.finished(completed=False, failed=False)

    second = slots.writer(0)
    second.reset()
    second.running(RES, 1.0, None)
    second.finished(completed=False, failed=True)

    view = slots.read(0)
    assert view is not None
    assert (view.processed, view.failed) == (2, 1)


def test_timed_out_marks_only_the_attempt_it_names(slots: Slots) -> None:
    writer = slots.writer(1)
    writer.running(RES, 1.0, 4.0)
    view = slots.read(1)
    assert view is not None

    slots.mark_timed_out(1, view.seq)
    assert slots.read(1).timed_out  # type: ignore[union-attr]

    writer.finished(completed=True, failed=False)
    writer.running(RES, 1.0, 4.0)
    assert not slots.read(1).timed_out  # type: ignore[union-attr]


def test_handle_returning_clears_the_timeout_while_the_outcome_is_settled(slots: Slots) -> None:
    writer = slots.writer(1)
    writer.running(RES, 1.0, 4.0)

    writer.settling(ok=False)
    settling = slots.read(1)
    writer.settling(ok=True)
    returned = slots.read(1)

    assert settling is not None and returned is not None
    assert settling.state is SlotState.SETTLING
    assert returned.state is SlotState.RETURNED
    assert settling.deadline == returned.deadline == 0.0
    assert returned.reservation == RES


def test_a_slot_holding_broken_text_reads_as_none(slots: Slots) -> None:
    writer = slots.writer(1)
    writer.running(Reservation("id", "q", '{"name":"日本"}', 1, "t"), 1.0, None)
    data_at = SLOT_BYTES + _DATA_AT  # slot 1's reservation bytes
    slots._map[data_at : data_at + 1] = b"\xff"  # a dead worker's half-copied text

    assert slots.read(1) is None


def test_a_torn_slot_reads_as_none(slots: Slots) -> None:
    writer = slots.writer(1)
    writer._begin()  # a worker that died in the middle of a write

    assert slots.read(1) is None


def test_a_job_too_big_for_its_slot_is_recorded_with_its_deadline_in_the_overflow_file(
    slots: Slots,
) -> None:
    writer = slots.writer(1)
    huge = Reservation("big", "default", '{"x":"' + "é" * DATA_BYTES + '"}', 3, "t")

    writer.running(huge, 1.0, 4.0)

    status = slots.status(1)
    assert status is not None and status.state is SlotState.RUNNING
    assert (status.deadline, status.reservation) == (5.0, None)  # the header alone
    view = slots.read(1)
    assert view is not None and view.reservation == huge
    writer.running(RES, 2.0, None)  # a small one after it is in the slot again
    assert slots.read(1).reservation == RES  # type: ignore[union-attr]


def test_a_worker_process_reads_its_own_overflow_file_only(slots: Slots) -> None:
    huge = Reservation("big", "default", "x" * (DATA_BYTES + 1), 1, "t")
    slots.writer(2).running(huge, 1.0, 4.0)

    own = Slots(slots.fd, 3, {2: slots.overflow[2]})
    blind = Slots(slots.fd, 3)

    assert own.read(2).reservation == huge  # type: ignore[union-attr]
    assert blind.read(2).reservation is None  # type: ignore[union-attr]
    assert blind.read(2).deadline == 5.0  # type: ignore[union-attr]
    own._map.close()
    blind._map.close()


def test_unicode_reservations_round_trip(slots: Slots) -> None:
    res = Reservation("id-é", "files:ü", '{"name":"日本"}', 1, "tök")
    slots.writer(0).running(res, 0.5, 1.0)

    assert slots.read(0).reservation == res  # type: ignore[union-attr]


def _batch(n: int) -> list[Reservation]:
    return [Reservation(f"job-{i}", "default", '{"v":1}', 1, f"tok.{i}") for i in range(n)]


def _ids(reservations: tuple[Reservation, ...] | list[Reservation]) -> list[str]:
    return [res.id for res in reservations]


def test_a_batch_waits_in_the_slot_until_each_job_is_taken(slots: Slots) -> None:
    writer = slots.writer(1)
    batch = _batch(4)

    writer.reserved(batch)
    assert _ids(slots.read(1).waiting) == ["job-0", "job-1", "job-2", "job-3"]  # type: ignore[union-attr]
    writer.taking(batch[0])
    writer.running(batch[0], 1.0, 5.0)
    writer.taking(batch[2])  # job-1's lease was lost to another worker: skipped

    view = slots.read(1)
    assert view is not None
    assert _ids(view.waiting) == ["job-1", "job-3"]  # job-1 stale: the driver skips it
    assert view.waiting[1] == Reservation("job-3", "default", "", 0, "tok.3")  # no raw needed
    assert slots.status(1).waiting == ()  # type: ignore[union-attr]


def test_completed_jobs_are_held_until_the_next_reserve_acknowledges_them(slots: Slots) -> None:
    writer = slots.writer(0)
    batch = _batch(3)
    writer.reserved(batch)
    for res in batch[:2]:
        writer.taking(res)
        writer.running(res, 1.0, None)
        writer.settling(ok=True)
        writer.finished(completed=True, failed=False)

    view = slots.read(0)
    assert view is not None
    assert _ids(view.completed) == ["job-0", "job-1"]
    done, waiting = view.left_behind()
    assert _ids(done) == ["job-0", "job-1"]  # the running part's job is listed once
    assert _ids(waiting) == ["job-2"]

    writer.reserved([])  # the next reserve acknowledged them
    after = slots.read(0)
    assert after is not None
    assert (after.state, after.reservation, after.completed, after.waiting) == (
        SlotState.IDLE, None, (), ()
    )  # fmt: skip


def test_completed_jobs_held_past_a_reserve_stay_listed_for_acknowledging(slots: Slots) -> None:
    """A worker that counts batch jobs in groups keeps their acks past its reserves."""
    writer = slots.writer(0)
    first, held = _batch(3)[:1], _batch(3)[1:]
    writer.reserved(first, held)
    writer.taking(first[0])
    writer.running(first[0], 1.0, None)

    done, waiting = slots.read(0).left_behind()  # type: ignore[union-attr]
    assert (_ids(done), waiting) == (["job-1", "job-2"], [])
    writer.reserved([])  # the next reserve acknowledged them (no group held)
    assert slots.read(0).left_behind() == ([], [])  # type: ignore[union-attr]


def test_what_a_dead_worker_left_never_lists_its_running_job_as_waiting(slots: Slots) -> None:
    writer = slots.writer(2)
    batch = _batch(3)
    writer.reserved(batch)
    writer.running(batch[0], 1.0, 5.0)  # killed before taking() was recorded: still listed

    done, waiting = slots.read(2).left_behind()  # type: ignore[union-attr]

    assert done == []
    assert _ids(waiting) == ["job-1", "job-2"]


def test_a_batch_too_big_for_the_held_part_keeps_what_fits() -> None:
    batch = _batch(8)
    full, count = held.encode(batch, room=10_000)
    assert count == 8

    part, kept = held.encode(batch, room=len(full) - 1)

    assert 0 < kept < 8
    completed, waiting = held.decode(part, kept)
    assert (completed, _ids(waiting)) == ([], [f"job-{i}" for i in range(kept)])


def test_a_reset_slot_holds_nothing(slots: Slots) -> None:
    writer = slots.writer(1)
    writer.reserved(_batch(5))
    writer.finished(completed=True, failed=False)

    slots.writer(1).reset()

    view = slots.read(1)
    assert view is not None and (view.completed, view.waiting) == ((), ())


# --------------------------------------------------------------------------- spec


def test_spec_round_trips_through_json() -> None:
    spec = WorkSpec(
        "redis", ("high", "default"), imports=("app.jobs",), tries=4, timeout_s=0,
        max_jobs=10, memory_mb=64, output=Output.JSON, index=2, recover="was killed by SIGKILL",
    )  # fmt: skip

    assert WorkSpec.from_json(spec.to_json()) == spec


def test_spec_overrides_only_what_was_given_and_zero_timeout_means_none() -> None:
    spec = WorkSpec("database", ("default",), timeout_s=0, once=True)

    overrides = spec.worker_overrides()

    assert overrides["timeout_s"] is None
    assert overrides["max_jobs"] == 1
    assert "tries" not in overrides
    assert "backoff_s" not in overrides


# --------------------------------------------------------------------------- imports


def test_import_by_path_names_the_module_after_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "kashq_path_import_probe.py").write_text("VALUE = 42\n")

    names = import_job_modules(["sub/kashq_path_import_probe.py"], cwd=str(tmp_path))

    assert names == ["kashq_path_import_probe"]
    assert sys.modules["kashq_path_import_probe"].VALUE == 42


def test_import_failure_carries_the_users_traceback(tmp_path: Path) -> None:
    (tmp_path / "kashq_broken_probe.py").write_text("x = 1\nraise KeyError('oops')\n")

    with pytest.raises(ImportFailed) as caught:
        import_job_modules(["kashq_broken_probe"], cwd=str(tmp_path))

    assert str(caught.value) == "cannot import job module 'kashq_broken_probe': KeyError: 'oops'"
    assert 'kashq_broken_probe.py", line 2' in caught.value.details
    assert "importlib" not in caught.value.details


# --------------------------------------------------------------------------- output


def event(kind: EventKind, **fields: object) -> JobEvent:
    env = Envelope("id-1", "app.jobs.Mail", "emails", {}, 0.0, 0.0)
    return JobEvent(kind, RES, env, env.type, env.queue, at=1_800_000_000.0, **fields)  # type: ignore[arg-type]


def test_duration_is_laravel_style() -> None:
    assert duration(0.01234) == "12.34ms"
    assert duration(2.5) == "2.50s"


def test_plain_lines_end_with_the_status() -> None:
    stream = io.StringIO()
    lines = JobLines(Output.PLAIN, worker=0, stream=stream)

    lines(event(EventKind.STARTED, attempt=1))
    lines(event(EventKind.COMPLETED, attempt=1, duration_s=0.0123))
    lines(event(EventKind.RETRIED, attempt=1, duration_s=0.5, delay_s=2, error="E: x"))
    lines(event(EventKind.IDLE))

    first, second, third, detail = stream.getvalue().splitlines()
    assert first.endswith(" RUNNING") and "app.jobs.Mail ...." in first
    assert second.endswith(" 12.30ms DONE")
    assert third.endswith(" 500.00ms RETRY in 2s")
    assert detail.strip() == "E: x"
    assert len(first) == len(second) == len(third) == 100  # dots fill a fixed width


def test_retry_delays_are_rounded_as_a_person_reads_them() -> None:
    assert [delay(s) for s in (0, 0.0004, 0.25, 0.9996, 2, 2.21567, 9.96, 15.4, 120)] == [
        "0s", "0s", "250ms", "1s", "2s", "2.2s", "10s", "15s", "120s"
    ]  # fmt: skip
    stream = io.StringIO()
    JobLines(Output.PLAIN, stream=stream)(event(EventKind.RETRIED, delay_s=2.21567, error="E"))
    assert stream.getvalue().splitlines()[0].endswith(" RETRY in 2.2s")


def test_json_lines_carry_the_event_fields() -> None:
    stream = io.StringIO()
    lines = JobLines(Output.JSON, worker=3, stream=stream)

    lines(event(EventKind.FAILED, attempt=2, duration_s=0.001, error="boom"))

    (record,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert record["event"] == "job.failed"
    assert record["job"] == "app.jobs.Mail"
    assert record["job_id"] == "id-1"
    assert record["worker"] == 3
    assert record["attempt"] == 2
    assert record["error"] == "boom"
    assert record["at"].startswith("2027-01-15T")


def test_quiet_prints_no_job_lines_but_still_supervisor_notes() -> None:
    stream = io.StringIO()
    lines = JobLines(Output.QUIET, stream=stream)

    lines(event(EventKind.COMPLETED, duration_s=0.1))
    lines.note("supervisor.stopping", "Stopping.")

    assert stream.getvalue() == "Stopping.\n"


# --------------------------------------------------------------------------- restarts


class _Notes:
    def note(self, event: str, message: str, *, style: str = "", **fields: object) -> None:
        pass

    def timeout(self, *args: object, **fields: object) -> None:
        pass


def _quick_exit(supervisor: Supervisor, *, jobs_run: int, recover: str | None = None) -> float:
    """Start worker 0 (a stand-in process), let it finish ``jobs_run`` jobs and die at
    once; returns the pause before its restart."""
    with patch("kashq.supervisor.supervisor.subprocess.Popen"):
        supervisor._start(0, recover)
    proc = supervisor._procs.pop(0)
    writer = supervisor.slots.writer(0)
    if recover is not None:  # settling the predecessor's job counts as finished
        writer.running(RES, 1.0, None)
        writer.finished(completed=False, failed=False)
    for _ in range(jobs_run):
        writer.running(RES, 1.0, None)
        writer.finished(completed=True, failed=False)
    return supervisor._pause_before_restart(proc, proc.started + 0.5)


def test_a_worker_dying_right_after_start_is_restarted_with_a_growing_pause() -> None:
    supervisor = Supervisor(
        WorkSpec("memory", ("default",)), SupervisorOptions(), MemoryDriver(), _Notes()
    )

    pauses = [_quick_exit(supervisor, jobs_run=0, recover="died") for _ in range(4)]

    assert pauses == [0.0, 1.0, 2.0, 4.0]
    supervisor.slots.close()


def test_a_worker_that_finished_a_job_before_dying_is_restarted_at_once() -> None:
    # Found by the chaos suite: workers killed every second or two while draining
    # a queue were paused up to 30 s each, though every one had done work.
    supervisor = Supervisor(
        WorkSpec("memory", ("default",)), SupervisorOptions(), MemoryDriver(), _Notes()
    )

    pauses = [_quick_exit(supervisor, jobs_run=1, recover="died") for _ in range(4)]
    pauses.append(_quick_exit(supervisor, jobs_run=0, recover="died"))

    assert pauses == [0.0, 0.0, 0.0, 0.0, 0.0]  # the count of quick exits starts again too
    supervisor.slots.close()


def test_a_dead_workers_held_jobs_are_settled_at_once_not_left_to_its_replacement() -> None:
    """Its completed jobs are acknowledged before their leases lapse, however late the
    replacement starts; the running job is left to the replacement."""
    supervisor = Supervisor(
        WorkSpec("memory", ("default",)), SupervisorOptions(), MemoryDriver(), _Notes()
    )
    settled: list[tuple[list[str], list[str]]] = []
    supervisor.control.settle_left_behind = (  # type: ignore[method-assign]
        lambda done, waiting: settled.append((_ids(done), _ids(waiting)))
    )
    with patch("kashq.supervisor.supervisor.subprocess.Popen"):
        supervisor._start(0, None)
    proc = supervisor._procs[0]
    writer = supervisor.slots.writer(0)
    running, held = _batch(3)[:1], _batch(3)[1:]
    writer.reserved(running, held)
    writer.taking(running[0])
    writer.running(running[0], 1.0, None)

    supervisor._after_exit(proc, -9, proc.started + 5.0)

    assert settled == [(["job-1", "job-2"], [])]
    supervisor.slots.close()


class _Recorded(_Notes):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, event: str, message: str, *, style: str = "", **fields: object) -> None:
        self.notes.append(message)


@pytest.mark.parametrize(
    ("running", "said"),
    [
        (0, "Stopping (asked): no job is running."),
        (1, "Stopping (asked): the running job finishes first, for up to 30s."),
        (2, "Stopping (asked): 2 running jobs finish first, for up to 30s."),
    ],
)
def test_stopping_says_what_it_waits_for(running: int, said: str) -> None:
    notes = _Recorded()
    supervisor = Supervisor(
        WorkSpec("memory", ("default",)), SupervisorOptions(workers=3), MemoryDriver(), notes
    )
    with patch("kashq.supervisor.supervisor.subprocess.Popen"):
        for index in range(3):
            supervisor._start(index, None)
    for index in range(running):
        supervisor.slots.writer(index).running(RES, 1.0, None)

    supervisor._begin_stop("asked")

    assert notes.notes == [said]
    supervisor.slots.close()
