"""``kashq.chain``: the builder's checks, the fake's ``assert_chained``, and chains run by
``memory_queue().drain()`` and the sync connection."""

from __future__ import annotations

import pytest

import kashq
from kashq.exceptions import JobDefinitionError
from kashq.testing import fake, memory_queue
from kashq.workflows.chain import derived_id

RAN: list[object] = []


class Fetch(kashq.Job):
    url: str

    def handle(self) -> str:
        RAN.append(("fetch", self.url))
        return f"page of {self.url}"


class Store(kashq.Job):
    queue = "storage"

    def handle(self) -> None:
        RAN.append(("store", self.previous_result(), self.envelope.queue))


class Broken(kashq.Job):
    tries = 1

    def handle(self) -> None:
        raise RuntimeError("disk full")


@kashq.handler("tests.chain_alarm")
def alarm(envelope: kashq.Envelope) -> None:
    RAN.append(("alarm", envelope.metadata["kashq.failed_error"]))


@pytest.fixture(autouse=True)
def _fresh_log():
    RAN.clear()


def test_a_chain_runs_in_order_on_the_chain_queue_unless_a_job_names_its_own():
    with memory_queue() as q:
        kashq.chain([Fetch(url="a"), Store()]).on_queue("crawl").dispatch()
        q.drain()
    assert RAN == [("fetch", "a"), ("store", "page of a", "storage")]


def test_catch_takes_a_registered_handler_function():
    with memory_queue() as q:
        kashq.chain([Broken(), Fetch(url="never")]).catch(alarm).dispatch()
        q.drain()
        assert [f.job_type for f in q.failed()] == [Broken.__kashq_name__]
    assert RAN == [("alarm", "RuntimeError: disk full")]


def test_the_sync_connection_runs_a_whole_chain_in_the_dispatch(monkeypatch):
    monkeypatch.setenv("KASHQ_CONNECTION", "sync")
    kashq.configure()
    try:
        kashq.chain([Fetch(url="b"), Store()]).dispatch()
    finally:
        monkeypatch.delenv("KASHQ_CONNECTION")
        kashq.configure()
    assert RAN == [("fetch", "b"), ("store", "page of b", "storage")]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: kashq.chain([]), "a chain needs at least one job"),
        (lambda: kashq.chain([Fetch(url="a"), "Store"]), "a chain takes jobs"),
        (lambda: kashq.chain([Fetch(url="a")]).catch(lambda: None), "is not registered"),
        (lambda: kashq.chain([Fetch(url="a")]).catch("no.such.handler"), "not a registered"),
        (
            lambda: (
                kashq.chain([Fetch(url="a").on_connection("redis"), Store()])
                .on_connection("database")
                .dispatch()
            ),
            "a chain runs on one connection",
        ),
    ],
)
def test_a_bad_chain_is_refused_in_one_line(build, message):
    with fake(), pytest.raises(JobDefinitionError, match=message):
        build()


def test_the_fake_records_chains_and_asserts_them():
    with fake() as queue:
        kashq.chain([Fetch(url="a"), Store()]).catch(alarm).dispatch()
        queue.assert_chained([Fetch, Store])
        queue.assert_chained([Fetch(url="a"), Store.__kashq_name__])
        queue.assert_dispatched(Fetch)  # the first job is dispatched; the rest ride with it
        queue.assert_not_dispatched(Store)
        with pytest.raises(AssertionError, match=r"Expected a chain .*Store -> .*Fetch"):
            queue.assert_chained([Store, Fetch])
        with pytest.raises(AssertionError, match=r"chains dispatched: .*Fetch -> .*Store"):
            queue.assert_chained([Fetch(url="b"), Store])
    assert RAN == []


def test_derived_ids_are_stable_uuid_shaped_and_distinct():
    base = "6f1c2b1e-8a40-4f5e-9a57-1a2b3c4d5e6f"
    assert derived_id(base, "catch.0") == derived_id(base, "catch.0")
    assert derived_id(base, "catch.0") != derived_id(base, "catch.1")
    assert len(derived_id(base, "append.0")) == 36
