"""Building a redis-py client from a URL, plain or Redis Cluster, and naming it in errors."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from kashq.drivers.redis import retry
from kashq.exceptions import ConfigError, DriverError, KashqError
from kashq.redact import hide_password, hide_secrets_in

if TYPE_CHECKING:
    from kashq.drivers.redis.lua import LuaScripts

T = TypeVar("T")

CONNECT_TIMEOUT_S = 5.0
# A server that stops answering (hung, paused, cut off mid-connection) fails a command
# after this long instead of blocking its caller forever. Blocking commands block for
# less (see longest_block_s).
REPLY_TIMEOUT_S = 5.0
CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}
MAX_DATABASE = 2**31 - 1  # Redis's own limit on its `databases` setting
_REPLY_MARGIN_S = 1.0  # a blocking command's reply must arrive this long before the timeout
_DB_OUT_OF_RANGE = "DB index is out of range"
_AUTH_REQUIRED = ("NOAUTH", "must be called with the client already authenticated")


def pack_command(args: Sequence[Any]) -> bytes:
    """One command as the bytes Redis reads (RESP), for ``send_packed_command``.

    hiredis packs the whole command in C; redis-py's own ``pack_command`` first
    encodes each argument in Python, which costs a dispatch about 6 µs and an
    event batch about 0.4 µs per event. Arguments are ``str``, ``bytes``, ``int``
    or ``float``; anything else is a :class:`redis.DataError`, as redis-py says.
    """
    try:
        return hiredis.pack_command(tuple(args))  # type: ignore[no-any-return]
    except TypeError as exc:
        raise redis.DataError(str(exc)) from None


def execute_packed(client: Any, command: Sequence[Any]) -> Any:
    """Run one command on ``client`` (a connection from its pool), packed by
    :func:`pack_command`; a cluster client routes it itself."""
    if is_cluster(client):
        return client.execute_command(*command)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command((pack_command(command),))
        return conn.read_response()
    except redis.ResponseError:  # the reply was read: the connection is fine
        raise
    except BaseException:  # a reply may be left unread: the connection cannot be reused
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


def connect(url: str, *, socket_timeout_s: float | None = REPLY_TIMEOUT_S) -> Any:
    """A client for ``url``: ``redis://``, ``rediss://`` (TLS), ``unix://``, or a cluster.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) connects to a Redis
    Cluster through any one of its nodes. A host that does not answer fails
    after ``CONNECT_TIMEOUT_S`` instead of the system's TCP timeout, and a reply
    that never comes after ``socket_timeout_s`` (blocking commands are kept
    shorter: see :func:`longest_block_s`). A URL's own timeouts win. A plain client
    retries nothing itself: kashq's one retry policy (:mod:`.retry`) wraps
    every call, so attempts never multiply.
    """
    check_database(url)
    options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S}
    if socket_timeout_s is not None:
        options["socket_timeout"] = socket_timeout_s
    try:
        for scheme, plain in CLUSTER_SCHEMES.items():
            if url.startswith(scheme):
                # The cluster client keeps its own retries: they refresh its slot map.
                return RedisCluster.from_url(plain + url[len(scheme) :], **options)
        return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
    except ValueError as exc:  # it may quote a piece of a password holding a '/' or '@'
        raise ConfigError(
            f"invalid Redis URL {hide_password(url)}: {hide_secrets_in(str(exc), url)}"
        ) from None
    except (redis.RedisError, RedisClusterException) as exc:  # a cluster client connects at once
        raise DriverError(
            f"cannot reach the Redis cluster at {hide_password(url)}: "
            f"{hide_secrets_in(reason(exc), url)}"
        ) from None


def check_database(url: str) -> None:
    """ConfigError unless the database in ``url``'s path is one Redis can have.

    redis-py reads ``redis://host/abc`` as database 0 without a word; a typo
    there would put the jobs where nobody looks for them.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        return  # unix:// takes ?db=, which redis-py checks itself
    number = unquote(urlsplit(url).path).replace("/", "")  # as redis-py reads it
    if not number:
        return
    if not (number.isascii() and number.isdigit()) or int(number) > MAX_DATABASE:
        raise ConfigError(
            f"invalid Redis URL {hide_password(url)}: the database after the host must be a "
            f"number from 0 to {MAX_DATABASE}"
        )
    if "cluster" in scheme and int(number) != 0:
        shown = hide_password(url)
        raise ConfigError(f"invalid Redis URL {shown}: a Redis Cluster has database 0 only")


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def longest_block_s(client: Any) -> float:
    """How long one blocking command (BLPOP, XREAD BLOCK) may block on ``client``.

    Its reply must come before the client's reply timeout gives up on it, with a
    margin; without a timeout there is no limit.
    """
    if is_cluster(client):
        options = client.nodes_manager.connection_kwargs
    else:
        options = client.connection_pool.connection_kwargs
    timeout_s = options.get("socket_timeout")
    if timeout_s is None:
        return math.inf
    return max(float(timeout_s) - _REPLY_MARGIN_S, float(timeout_s) / 2)


def address_of(client: Any) -> str:
    """The URL of the server ``client`` talks to, its password shown as ``***``."""
    if is_cluster(client):
        node = client.get_default_node()
        return f"redis+cluster://{node.host}:{node.port}"
    options = client.connection_pool.connection_kwargs
    password = "***" if options.get("password") else ""
    user = options.get("username") or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    db = options.get("db", 0)
    if "path" in options:
        return f"unix://{credentials}{options['path']}?db={db}"
    ssl = issubclass(client.connection_pool.connection_class, redis.SSLConnection)
    host, port = options.get("host", "localhost"), options.get("port", 6379)
    shown_host = f"[{host}]" if ":" in str(host) else host
    return f"{'rediss' if ssl else 'redis'}://{credentials}{shown_host}:{port}/{db}"


def reason(exc: BaseException) -> str:
    """What went wrong, in one line: redis-py's first line, or plainer words for auth."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if any(marker in text for marker in _AUTH_REQUIRED):
        return "the server requires a password: give it in the URL (redis://:PASSWORD@host:port/db)"
    if isinstance(exc, redis.AuthenticationError):
        return f"authentication failed: {text}"
    return text


def failure(
    exc: BaseException, address: str, *, what: str = "redis", kind: type[DriverError] = DriverError
) -> KashqError:
    """The kashq error for a Redis failure: one line naming the server (``address``).

    A database number the server does not have is a setting to fix, not an
    outage: a ConfigError naming the URL.
    """
    text = reason(exc)
    if _DB_OUT_OF_RANGE in text:
        return ConfigError(f"invalid Redis URL {address}: the server has no such database ({text})")
    return kind(f"{what} at {address}: {text}")


class RedisClientUser:
    """What a store on Redis (results, events, locks) shares: its client, opened from a URL
    or borrowed, and the address errors name. It closes only a client it opened."""

    def __init__(self, client: Any | str) -> None:
        self._owned = isinstance(client, str)
        self.client = connect(client) if isinstance(client, str) else client
        self.address = address_of(self.client)

    def close(self) -> None:
        """Close the client if this object made it from a URL (a borrowed one stays open)."""
        if self._owned:
            self.client.close()


class ScriptedStore(RedisClientUser):
    """A store on Redis whose steps are Lua scripts (results, recent jobs, batches, history):
    each step runs under the driver's retry policy, reloading the store's scripts if the
    server lost them, and a Redis error leaves as one line of ``error`` naming the server."""

    error: type[DriverError] = DriverError
    _lua: LuaScripts

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return retry.call(fn, reload_scripts=lambda: self._lua.load(self.client))
        except redis.RedisError as exc:
            raise self._failure(what, exc) from exc

    def _failure(self, what: str, exc: redis.RedisError) -> KashqError:
        return failure(exc, self.address, what=f"{what} failed on Redis", kind=self.error)
