"""How an idle database worker learns that a job may have arrived, per database.

- **PostgreSQL: notifications.** Every push, release and give-back sends
  ``pg_notify(channel, queue)`` inside its own transaction, so it is delivered
  when the job is committed and never for a job rolled back. A driver that
  waits holds one listening connection, read by a thread; its waiting consumer
  threads sleep until a notification for one of their queues, the next delayed
  job's time, or ``LISTEN_FALLBACK_S`` (a lease that lapsed, a job written by a
  program that does not notify). While the listening connection is down, they
  poll every ``poll_interval_s``; when it is back they claim once, since
  notifications sent meanwhile are lost. The channel is the table prefix and
  ``kashq_jobs``, so two installs in one database never wake each other.
- **SQLite: the database's files.** Every commit writes to the ``-wal`` file:
  waiting threads look at its size and time every ``WATCH_S`` (a ``stat``, no
  query, no lock) and claim when it changed, or after ``IDLE_POLL_MAX_S``.
- **MySQL/MariaDB: polls that back off.** Every ``poll_interval_s`` at first,
  then a quarter of the time the thread has been idle, up to every
  ``IDLE_POLL_MAX_S``; a thread that finds a job polls fast again. A busy worker
  never waits, so it pays nothing for this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, String, bindparam, func, select

from kashq.db.engine import first_line, listening_connection, sqlite_path

log = logging.getLogger(__name__)

IDLE_POLL_MAX_S = 0.5
"""The longest an idle worker waits between claims where nothing wakes it (MariaDB,
SQLite whose files cannot be watched); SQLite with its files watched waits up to this."""
WATCH_S = 0.005
"""How often a waiting SQLite worker looks at the database's files."""
LISTEN_FALLBACK_S = 1.0
"""The longest an idle PostgreSQL worker waits between claims while notifications work."""
_RECONNECT_MAX_S = 2.0


CHANNEL = "kashq_jobs"
"""The PostgreSQL notification channel, after the table prefix; the payload is a queue name."""
NOTIFY = select(
    func.pg_notify(bindparam("p_channel", type_=String), bindparam("p_queue", type_=String))
)
"""Wake the workers waiting for ``p_queue`` (when the transaction commits)."""


class Polling:
    """Waits that back off while a thread stays idle (MySQL/MariaDB; the others' fallback)."""

    exact = False
    """Whether a change wakes the waiters at once (then the driver also waits no longer
    than the next delayed job's time)."""

    def __init__(self, poll_s: float) -> None:
        self._poll_s = poll_s
        self._idle = threading.local()
        self._changed = threading.Condition()
        self._wakes = 0  # times wake() was called

    def mark(self, queues: Sequence[str]) -> object:
        """What :meth:`wait` compares against: taken before a claim, so a job pushed after
        the claim looked wakes the wait that follows it."""
        with self._changed:
            return self._mark(queues)

    def _mark(self, queues: Sequence[str]) -> object:
        return self._wakes

    def wake(self) -> None:
        """End the waits in progress, and any wait on a mark taken before this call (a
        thread told to stop does not sleep through its wait)."""
        with self._changed:
            self._wakes += 1
            self._changed.notify_all()

    def found(self) -> None:
        """This thread found a job: the next idle spell starts polling fast again."""
        self._idle.since = None

    def interval_s(self) -> float:
        """How long this thread waits before polling again."""
        now = time.monotonic()
        since = getattr(self._idle, "since", None)
        if since is None:
            self._idle.since = since = now
        return min(IDLE_POLL_MAX_S, max(self._poll_s, (now - since) / 4))

    def wait(self, mark: object, queues: Sequence[str], timeout_s: float) -> None:
        self._wait_for(mark, queues, min(timeout_s, self.interval_s()))

    def _wait_for(self, mark: object, queues: Sequence[str], timeout_s: float) -> bool:
        """Until the mark of ``queues`` differs from ``mark``, at most ``timeout_s``;
        whether it does."""
        with self._changed:
            return self._changed.wait_for(lambda: self._mark(queues) != mark, timeout=timeout_s)

    def close(self) -> None:
        self.wake()


class FileWatch(Polling):
    """SQLite: a change of the database's files wakes the waiters."""

    exact = True

    def __init__(self, path: Path, poll_s: float) -> None:
        super().__init__(poll_s)
        self._paths = (path, path.with_name(path.name + "-wal"))

    def _mark(self, queues: Sequence[str]) -> object:
        return self._wakes, tuple(_stamp(p) for p in self._paths)

    def wait(self, mark: object, queues: Sequence[str], timeout_s: float) -> None:
        end = time.monotonic() + min(timeout_s, IDLE_POLL_MAX_S)
        while (left := end - time.monotonic()) > 0:
            if self._wait_for(mark, queues, min(WATCH_S, left)):
                return


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class Notifications(Polling):
    """PostgreSQL: ``LISTEN`` on one connection, read by a thread started at the first wait."""

    def __init__(self, engine: Engine, channel: str, poll_s: float) -> None:
        super().__init__(poll_s)
        self._engine = engine
        self._channel = channel
        self._arrived: dict[str, int] = {}  # queue -> notifications so far
        self._rounds = 0  # times the listening connection came up
        self._live = False
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self.backend_pid: int | None = None  # the listening connection's server process

    @property
    def exact(self) -> bool:  # type: ignore[override]
        return self._live

    def _mark(self, queues: Sequence[str]) -> object:
        arrived = tuple(self._arrived.get(q, 0) for q in queues)
        return self._wakes, self._rounds, self._live, arrived

    def wait(self, mark: object, queues: Sequence[str], timeout_s: float) -> None:
        """Until a notification for ``queues`` or a change of the connection since ``mark``,
        or the fallback poll (``poll_interval_s`` while the connection is down)."""
        if self._thread is None:
            self._start()
        longest_s = LISTEN_FALLBACK_S if self._live else self._poll_s
        self._wait_for(mark, queues, min(timeout_s, longest_s))

    def close(self) -> None:
        self._closed.set()
        super().close()

    def _start(self) -> None:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="kashq-listen", daemon=True
                )
                self._thread.start()

    def _listen(self) -> None:
        pause_s, reported = self._poll_s, False
        while not self._closed.is_set():
            try:
                self._listen_once()
                pause_s, reported = self._poll_s, False
            except Exception as exc:  # the connection dropped, or never came up
                if not reported:
                    log.warning(
                        "job notifications stopped (%s); polling until they are back",
                        first_line(exc),
                    )
                    reported = True
            self._set_live(False)
            self._closed.wait(pause_s)
            pause_s = min(pause_s * 2, _RECONNECT_MAX_S)

    def _listen_once(self) -> None:
        conn = listening_connection(self._engine, self._channel)
        try:
            self.backend_pid = conn.info.backend_pid
            self._set_live(True)
            while not self._closed.is_set():
                for note in conn.notifies(timeout=LISTEN_FALLBACK_S):
                    with self._changed:
                        self._arrived[note.payload] = self._arrived.get(note.payload, 0) + 1
                        self._changed.notify_all()
        finally:
            conn.close()

    def _set_live(self, live: bool) -> None:
        with self._changed:
            if live != self._live:
                self._live = live
                self._rounds += 1
                self._changed.notify_all()


def wakeups(engine: Engine, channel: str, poll_s: float) -> Polling:
    """How the waiting workers of ``engine`` learn of new jobs (see the module docstring);
    ``channel``: the notification channel (PostgreSQL with psycopg)."""
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return Notifications(engine, channel, poll_s)
    path = sqlite_path(engine.url) if engine.dialect.name == "sqlite" else None
    return Polling(poll_s) if path is None else FileWatch(path, poll_s)
