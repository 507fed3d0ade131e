"""Lease renewal for the jobs a worker is running.

Every reservation being processed is tracked here, with the
:class:`~kashq.abort.AbortSignal` of its attempt; a background thread renews
their leases every third of a lease, so a long job is never handed to a
second worker. The thread starts when the first job is tracked and ends after
a lease interval with nothing to renew. The worker's controls find the running
attempts a cancel must stop here too (:meth:`Heartbeat.attempts`), so a job
pays for one registration, not two.
"""

from __future__ import annotations

import logging
import threading

from kashq.abort import AbortSignal
from kashq.drivers.base import Driver, Reservation

log = logging.getLogger(__name__)


class Heartbeat:
    """Keeps the leases of tracked reservations alive."""

    def __init__(self, driver: Driver, lease_s: float) -> None:
        self._driver = driver
        self._lease_s = lease_s
        # Keyed by (id, token): one process may hold a job twice (a lease that
        # lapsed under it), and each holder renews its own reservation.
        self._running: dict[tuple[str, str], tuple[Reservation, AbortSignal]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def track(self, reservation: Reservation, signal: AbortSignal) -> None:
        """``reservation`` runs, stopped by ``signal`` if it is cancelled."""
        with self._lock:
            self._running[(reservation.id, reservation.token)] = (reservation, signal)
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._renew_loop, args=(self._stop,), name="kashq-heartbeat",
                    daemon=True,
                )  # fmt: skip
                self._thread.start()

    def untrack(self, reservation: Reservation) -> None:
        with self._lock:
            self._running.pop((reservation.id, reservation.token), None)

    def attempts(self) -> list[tuple[Reservation, AbortSignal]]:
        """The attempts running now, each with its signal."""
        with self._lock:
            return list(self._running.values())

    def close(self) -> None:
        """End the renewal thread now (a later ``track`` starts a new one)."""
        with self._lock:
            self._stop.set()
            self._thread = None

    def _renew_loop(self, stop: threading.Event) -> None:
        idle_rounds = 0
        while not stop.wait(self._lease_s / 3):
            with self._lock:
                if stop.is_set():
                    return
                running = [reservation for reservation, _ in self._running.values()]
                idle_rounds = 0 if running else idle_rounds + 1
                if idle_rounds >= 3:
                    self._thread = None  # decided under the lock: track() starts a new one
                    return
            for reservation in running:
                try:
                    self._driver.extend(reservation, self._lease_s)
                except Exception as exc:  # keep renewing the others; never die silently
                    log.warning("could not renew lease of %s: %s", reservation.id, exc)
