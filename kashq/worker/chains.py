"""Moving a chain on from a step that completed: :mod:`kashq.workflows.steps`, for one worker.

The next step is pushed before the step's ack. If it cannot be pushed, the step
goes back to its queue marked done (it is not run again) and comes back after
the park delay to push its successor then.
"""

from __future__ import annotations

import logging

from kashq.clock import Clock
from kashq.drivers.base import Driver, Reservation
from kashq.envelope import Envelope
from kashq.exceptions import DriverError
from kashq.jobevents import EventKind
from kashq.worker.events import Listeners
from kashq.worker.outcome import Outcome
from kashq.worker.settle import Settler, one_line
from kashq.workflows import steps

log = logging.getLogger(__name__)


class ChainSteps:
    """Pushes the next step of each completed chain step of one worker."""

    def __init__(
        self, driver: Driver, settler: Settler, clock: Clock, events: Listeners, park_s: float
    ) -> None:
        self._driver = driver
        self._settler = settler
        self._clock = clock
        self._events = events
        self._park_s = park_s

    def advanced(self, res: Reservation, env: Envelope, edits: steps.Edits) -> bool:
        """Push the step after ``env`` (which completed); False if it could not be, and
        ``env`` went back to its queue to push it later."""
        now = self._clock.time()
        try:
            steps.push_next(self._driver, env, edits, now)
        except DriverError as exc:
            log.warning(
                "could not push the step after %s %s (%s); it goes back to its queue, "
                "done, to push it in %gs", env.type, env.id, one_line(exc), self._park_s,
            )  # fmt: skip
            self._settler.settle(
                self._driver.release, res, steps.done(env, edits, now + self._park_s)
            )
            self._events.emit(
                EventKind.RETRIED, res, env, attempt=env.attempts + 1, delay_s=self._park_s,
                error=f"completed; could not push the next step: {one_line(exc)}",
            )  # fmt: skip
            return False
        return True

    def resume(self, res: Reservation, env: Envelope) -> Outcome:
        """A step that completed earlier is delivered again to push its successor."""
        if not self.advanced(res, env, []):
            return Outcome.RETRIED
        self._settler.settle(self._driver.ack, res)
        self._events.emit(EventKind.COMPLETED, res, env, attempt=env.attempts + 1)
        return Outcome.COMPLETED
