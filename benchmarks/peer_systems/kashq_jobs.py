"""kashq jobs for ``benchmarks/peers.py``, imported by its ``queue:work`` processes."""

from kashq import Job
from peer_systems import probe


class Noop(Job):
    def handle(self) -> None:
        probe.done()


class Incr(Job):
    def handle(self) -> None:
        probe.incr()
        probe.done()


class Stamp(Job):
    sent: float

    def handle(self) -> None:
        probe.stamp(self.sent)


JOBS: dict[str, type[Job]] = {"noop": Noop, "incr": Incr}
