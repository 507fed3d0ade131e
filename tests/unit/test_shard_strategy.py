"""Placing jobs on shards: the consistent-hash ring and the strategies (no servers)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from kashq.drivers.sharded.ring import HashRing
from kashq.drivers.sharded.strategy import (
    HashChooser,
    LeastLoadedChooser,
    RoundRobinChooser,
    ShardStrategy,
    chooser_for,
)

NAMES = ["10.0.0.1:6379/0", "10.0.0.2:6379/0", "10.0.0.3:6379/0"]
IDS = [str(uuid.UUID(int=n * 7919 + 17)) for n in range(20_000)]


def test_the_same_id_always_lands_on_the_same_shard_in_every_ring_built_alike() -> None:
    first, second = HashRing(NAMES), HashRing(list(NAMES))

    assert [first.index(i) for i in IDS[:2000]] == [second.index(i) for i in IDS[:2000]]


def test_hash_ring_spreads_ids_roughly_evenly() -> None:
    ring = HashRing(NAMES)

    counts = Counter(ring.index(job_id) for job_id in IDS)

    assert set(counts) == {0, 1, 2}
    assert all(0.25 < n / len(IDS) < 0.42 for n in counts.values()), counts


def test_adding_a_fourth_shard_moves_about_a_quarter_of_the_ids_all_to_the_new_shard() -> None:
    before, after = HashRing(NAMES), HashRing([*NAMES, "10.0.0.4:6379/0"])

    moved = [i for i in IDS if before.index(i) != after.index(i)]

    assert 0.17 < len(moved) / len(IDS) < 0.33, len(moved)
    assert {after.index(i) for i in moved} == {3}


def test_hash_ring_refuses_no_shards_or_a_shard_listed_twice() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HashRing([])
    with pytest.raises(ValueError, match="distinct"):
        HashRing([NAMES[0], NAMES[0]])


def test_hash_strategy_offers_only_the_owner_of_the_id() -> None:
    chooser = HashChooser(NAMES)

    assert chooser.order(IDS[0], "default") == (HashRing(NAMES).index(IDS[0]),)


def test_round_robin_starts_each_job_at_the_next_shard_and_offers_all() -> None:
    chooser = RoundRobinChooser(3)

    orders = [list(chooser.order("x", "q")) for _ in range(4)]

    assert orders == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


def test_least_loaded_prefers_the_emptiest_shard_and_counts_what_it_placed() -> None:
    reads: list[str] = []

    def loads(queue: str) -> list[int | None]:
        reads.append(queue)
        return [5, 1, None]  # shard 2 did not answer: it sorts last

    chooser = LeastLoadedChooser(3, loads, ttl_s=60)
    assert list(chooser.order("x", "q")) == [1, 0, 2]

    chooser.placed(1, "q", 5)  # shard 1 now holds 6
    assert list(chooser.order("y", "q")) == [0, 1, 2]
    assert reads == ["q"], "counts are cached between reads"


def test_least_loaded_spreads_jobs_over_equally_loaded_shards() -> None:
    chooser = LeastLoadedChooser(3, lambda q: [4, 0, 0], ttl_s=60)

    firsts = Counter(chooser.order(str(n), "q")[0] for n in range(600))

    assert set(firsts) == {1, 2}
    assert min(firsts.values()) > 200, firsts


def test_least_loaded_reads_the_counts_again_once_they_are_stale() -> None:
    reads: list[str] = []
    chooser = LeastLoadedChooser(2, lambda q: reads.append(q) or [0, 0], ttl_s=0)

    chooser.order("a", "q")
    chooser.order("b", "q")

    assert reads == ["q", "q"]


@pytest.mark.parametrize("strategy", list(ShardStrategy))
def test_every_strategy_has_a_chooser(strategy: ShardStrategy) -> None:
    chooser = chooser_for(strategy, NAMES, lambda q: [0, 0, 0])

    assert set(chooser.order(IDS[0], "default")) <= {0, 1, 2}
