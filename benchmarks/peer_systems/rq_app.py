"""RQ job functions (RQ imports them by dotted name)."""

from peer_systems import probe


def noop() -> None:
    probe.done()


def incr() -> None:
    probe.incr()
    probe.done()


def stamp(sent: float) -> None:
    probe.stamp(sent)
