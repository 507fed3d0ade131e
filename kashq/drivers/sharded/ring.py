"""A consistent-hash ring: the same key always maps to the same shard.

Each shard owns ``vnodes`` points on a 64-bit ring, placed by hashing its
name; a key belongs to the first point at or after its own hash. Adding a
shard to N takes about 1/(N+1) of the keys, all of them moving to the new
shard, instead of reshuffling everything as ``hash % N`` would. The hash is
BLAKE2b, so every process (and every Python version) agrees.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

DEFAULT_VNODES = 160


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Maps keys to indexes of ``names`` (shard names, which must be distinct)."""

    def __init__(self, names: Sequence[str], *, vnodes: int = DEFAULT_VNODES) -> None:
        if not names:
            raise ValueError("a hash ring needs at least one shard")
        if len(set(names)) != len(names):
            raise ValueError(f"shard names must be distinct: {list(names)}")
        points = sorted(
            (_point(f"{name}#{v}"), i) for i, name in enumerate(names) for v in range(vnodes)
        )
        self._hashes = [hash_ for hash_, _ in points]
        self._owners = [owner for _, owner in points]

    def index(self, key: str) -> int:
        """The index of the shard owning ``key``."""
        at = bisect.bisect_left(self._hashes, _point(key))
        return self._owners[at % len(self._owners)]
