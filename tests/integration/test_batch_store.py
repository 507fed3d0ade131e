"""The batch stores, the same on every connection: jobs counted by id, callbacks due once.

Runs on the contract suite's ``driver`` fixture (every driver, Redis Cluster and the
sharded strategies included), with the batch store sharing each driver's storage.
"""

from __future__ import annotations

import threading

import pytest

from kashq.workflows.batches import BatchRecord, BatchStoreError, Callbacks, store_for
from tests.integration import test_driver_contract as contract

clock, driver = contract.clock, contract.driver
NOW = 1_700_000_000.0


@pytest.fixture
def store(driver):
    return store_for(driver)


def new_batch(store, batch_id: str, total: int, **fields) -> list[str]:
    ids = [f"{batch_id}-{n:04d}" for n in range(total)]
    store.create(BatchRecord(batch_id, "import", total, NOW, options='{"a":1}', **fields), ids)
    return ids


def test_each_job_counts_once_and_each_callback_falls_due_once(store):
    ids = new_batch(store, "b1", 3, allow_failures=True)
    first = store.count("b1", [ids[0]], "done", NOW + 1)
    assert first is not None and first.due == Callbacks(0) and first.record.pending == 2
    assert store.count("b1", [ids[0]], "done", NOW + 2) is None  # delivered twice: counted once
    assert store.count("b1", [ids[0]], "failed", NOW + 2) is None  # a completed job stays so
    failed = store.count("b1", [ids[1]], "failed", NOW + 3)
    assert failed is not None and failed.due == Callbacks.CATCH and not failed.cancelled
    last = store.count("b1", [ids[2]], "cancelled", NOW + 4)
    assert last is not None and last.due == Callbacks.FINALLY
    record = store.get("b1")
    assert (record.done, record.failed, record.cancelled, record.pending) == (1, 1, 1, 0)
    assert (record.finished_at, record.cancelled_at, record.options) == (NOW + 4, None, '{"a":1}')
    assert record.due == Callbacks.CATCH | Callbacks.FINALLY
    assert store.count("b1", ["not-a-member"], "done", NOW) is None
    assert store.count("no-such-batch", [ids[0]], "done", NOW) is None


def test_a_failed_job_retried_to_completion_makes_then_due(store):
    ids = new_batch(store, "b2", 2, allow_failures=True)
    store.count("b2", [ids[0]], "done", NOW)
    assert store.count("b2", [ids[1]], "failed", NOW).due == Callbacks.CATCH | Callbacks.FINALLY
    assert store.member_ids("b2", "failed") == [ids[1]]
    again = store.count("b2", [ids[1]], "done", NOW + 60)  # queue:retry-batch, then it completed
    assert again is not None and again.due == Callbacks.THEN
    assert (again.record.done, again.record.failed) == (2, 0)
    assert store.count("b2", [ids[1]], "failed", NOW + 61) is None


def test_a_failure_cancels_the_batch_unless_failures_are_allowed(store):
    ids = new_batch(store, "b3", 3)
    counted = store.count("b3", [ids[0]], "failed", NOW + 5)
    assert counted.cancelled and counted.record.cancelled_at == NOW + 5
    assert not store.count("b3", [ids[1]], "failed", NOW + 6).cancelled  # cancelled once
    last = store.count("b3", [ids[2]], "done", NOW + 7)
    assert last.due == Callbacks.FINALLY  # no `then` for a cancelled batch


def test_racing_workers_count_every_job_once(store):
    ids = new_batch(store, "b4", 120, allow_failures=True)
    due: list[Callbacks] = []
    lock = threading.Lock()

    def work(part: list[str]) -> None:
        for job_id in part:
            for _ in range(2):  # every job delivered twice
                counted = store.count("b4", [job_id], "done", NOW)
                if counted is not None:
                    with lock:
                        due.append(counted.due)

    threads = [threading.Thread(target=work, args=(ids[k::4] + ids[:10],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(due) == 120
    assert [d for d in due if d] == [Callbacks.THEN | Callbacks.FINALLY]
    assert store.get("b4").done == 120


def test_adding_cancelling_listing_settling_and_pruning(store):
    ids = new_batch(store, "b5", 1)
    assert store.add("b5", ["b5-x", "b5-y", ids[0]]).total == 3  # a known id is not added twice
    assert store.member_ids("b5") == [ids[0], "b5-x", "b5-y"]
    assert store.cancel("b5", NOW + 1).cancelled_at == NOW + 1
    assert store.cancel("b5", NOW + 2).cancelled_at == NOW + 1
    assert store.cancel("nope", NOW) is None
    for job_id in store.member_ids("b5"):
        store.count("b5", [job_id], "cancelled", NOW + 3)
    assert store.get("b5").finished_at == NOW + 3
    with pytest.raises(BatchStoreError, match="batch b5 has finished: no jobs can be added"):
        store.add("b5", ["late"])
    with pytest.raises(BatchStoreError, match="batch zz is unknown"):
        store.add("zz", ["late"])
    new_batch(store, "b6", 1)
    assert [r.id for r in store.recent(10)][:2] in (["b6", "b5"], ["b5", "b6"])
    assert [r.id for r in store.unsettled()] == ["b5"]  # finally due, not pushed
    store.mark_pushed("b5", Callbacks.FINALLY)
    assert store.unsettled() == []
    assert store.get("b5").pushed == Callbacks.FINALLY
    assert store.prune(NOW + 2) == 0
    assert store.prune(NOW + 4) == 1
    assert store.get("b5") is None and store.get("b6") is not None


def test_many_jobs_are_counted_in_one_call_each_once(store):
    ids = new_batch(store, "b7", 5, allow_failures=True)
    store.count("b7", [ids[0]], "failed", NOW)
    counted = store.count("b7", [*ids, ids[1], "stranger"], "done", NOW + 1)  # a repeat, a stranger
    assert counted is not None and counted.due == Callbacks.THEN | Callbacks.FINALLY
    assert (counted.record.done, counted.record.failed, counted.record.pending) == (5, 0, 0)
    assert '"a":1' in counted.record.options  # read: callbacks fell due
    assert store.count("b7", ids, "done", NOW + 2) is None
    many = new_batch(store, "b8", 2500)  # more than one script call or statement holds
    assert store.count("b8", many, "done", NOW).record.done == 2500
