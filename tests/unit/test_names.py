"""One rule for queue names wherever a name enters: jobs, settings, worker options."""

from __future__ import annotations

import pytest

import kashq
from kashq.names import check_queue_name, is_queue_name
from kashq.worker.options import WorkerOptions

BAD = ["", "a,b", "a b", "tab\there", "{x}", "x}", "line\nbreak", "x" * 201]
GOOD = ["default", "emails:high", "é-queue", "x" * 200, "a.b-c_d"]


@pytest.mark.parametrize("name", GOOD)
def test_good_queue_names_pass_everywhere(name: str) -> None:
    assert is_queue_name(name)
    assert check_queue_name(name) == name
    assert WorkerOptions(queues=(name, "default")).queues[0] == name
    assert kashq.load_settings(queue=name).queue == name


@pytest.mark.parametrize("name", BAD)
def test_bad_queue_names_are_refused_everywhere(name: str) -> None:
    assert not is_queue_name(name)
    with pytest.raises(ValueError, match="a queue name is 1-200 characters"):
        check_queue_name(name)
    with pytest.raises(ValueError, match="a queue name is 1-200 characters"):
        WorkerOptions(queues=("default", name))
    with pytest.raises(kashq.ConfigError, match="invalid setting queue"):
        kashq.load_settings(queue=name)


@pytest.mark.parametrize("queues", [(), "default", []])
def test_worker_options_need_a_sequence_of_queue_names(queues: object) -> None:
    with pytest.raises(ValueError, match="queues must be a non-empty sequence"):
        WorkerOptions(queues=queues)  # type: ignore[arg-type]


def test_start_workers_refuses_a_bad_queue_before_starting_anything() -> None:
    kashq.configure(connection="memory")

    with pytest.raises(ValueError, match="a queue name is"):
        kashq.start_workers(1, queues=("emails,default",))
