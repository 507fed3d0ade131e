"""The one retry policy of every Redis call kashq makes (queues, locks, events).

A Redis restart takes two things from a long-lived process at once: its open
connections (the first command on each fails: the server closed it) and the
server's script cache (EVALSHA answers NOSCRIPT). A call recovers from both,
once each and in either order, so the first call after a restart succeeds:

- a connection error: the call runs once more (on a fresh connection: the one
  that failed was closed by whoever saw it fail);
- NOSCRIPT: the scripts are loaded and the call runs once more.

Nothing else is retried, so a Redis that is really down fails fast with one
error: a refused connection is refused again at once, a wrong password is
not worth a second try, and a timeout (a hung server) is not retried at all.
Running a call twice is safe because every kashq script can be repeated (a
repeated push leaves the job as it is; a repeated reserve, under its token,
returns the job the first one took). The clients kashq builds retry nothing
themselves (see :func:`~kashq.drivers.redis.client.connect`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis
from redis.exceptions import NoScriptError

T = TypeVar("T")

# A connection error that a fresh connection cannot cure.
_FINAL = (redis.AuthenticationError, redis.exceptions.AuthorizationError)


def call(step: Callable[[], T], *, reload_scripts: Callable[[], None] | None = None) -> T:
    """``step()``, run again once after a lost connection and once after a lost script cache."""
    reconnected = reloaded = False
    while True:
        try:
            return step()
        except NoScriptError:
            if reloaded or reload_scripts is None:
                raise
            reloaded = True
            reload_scripts()
        except redis.ConnectionError as exc:
            if reconnected or isinstance(exc, _FINAL):
                raise
            reconnected = True
