"""Connections to Redis and the artifact store, with one-line startup errors naming the variable."""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from scalespace import ScalespaceError
from scalespace.storage import S3Store, StoreUnavailable

log = logging.getLogger("scalespace.infra")


def redact(url: str) -> str:
    """The URL without its password (safe to print)."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
    return url


def uses_sentinel(settings: Any) -> bool:
    """Redis is found through Sentinels (SCALESPACE_REDIS_SENTINELS) rather than at SCALESPACE_REDIS_URL."""
    return bool((getattr(settings, "redis_sentinels", "") or "").strip())


def redis_where(settings: Any) -> str:
    """Where Redis is, for messages (no password)."""
    if uses_sentinel(settings):
        return (f"the master {settings.redis_sentinel_master!r} of SCALESPACE_REDIS_SENTINELS="
                f"{settings.redis_sentinels.strip()}")
    return f"SCALESPACE_REDIS_URL={redact(settings.redis_url or '')}"


def require_redis_url(settings: Any) -> str:
    if not settings.redis_url:
        raise ScalespaceError(
            "SCALESPACE_REDIS_URL is not set: point it at Redis (redis://host:6379/0), or at Redis Sentinels with "
            "SCALESPACE_REDIS_SENTINELS, or run everything on one machine with `scalespace serve`"
        )
    if not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ScalespaceError(f"SCALESPACE_REDIS_URL={redact(settings.redis_url)!r} must start with redis://, rediss:// or unix://")
    return settings.redis_url


def broker_url(redis_url: str) -> str:
    """The Celery broker URL for the same Redis and database (kombu spells a socket redis+socket://, and takes
    a socket's database from `virtual_host`: it would read `db` and use database 0)."""
    if redis_url.startswith("unix://"):
        path, _, query = redis_url[len("unix://"):].partition("?")
        params = [("virtual_host", v) if k == "db" else (k, v) for k, v in parse_qsl(query, keep_blank_values=True)]
        return "redis+socket://" + path + (f"?{urlencode(params)}" if params else "")
    return redis_url


def celery_broker(settings: Any) -> tuple[str, dict[str, Any]]:
    """The Celery broker URL and the transport options it needs beyond the common ones.

    With Sentinels: kombu's sentinel transport (`sentinel://h1:p1;sentinel://h2:p2`, the master's password
    and database in each URL, the master's name and the Sentinels' password in the transport options); it
    asks the Sentinels for the master on every (re)connection, so it follows a failover."""
    if not uses_sentinel(settings):
        return broker_url(require_redis_url(settings)), {}
    auth = f":{quote(settings.redis_password, safe='')}@" if settings.redis_password else ""
    hosts = ";".join(f"sentinel://{auth}{_netloc(h, p)}/{settings.redis_db}" for h, p in settings.sentinel_hosts())
    options: dict[str, Any] = {"master_name": settings.redis_sentinel_master}
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if settings.redis_sentinel_password:
        sentinel_kwargs["password"] = settings.redis_sentinel_password
    options["sentinel_kwargs"] = sentinel_kwargs
    return hosts, options


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redis_client(settings: Any, *, retries: int = 3) -> Any:
    """A redis-py client that retries a few times with backoff on a dropped connection.

    With Sentinels, the client asks them for the current master on each new connection, and a connection to a
    master that was demoted (READONLY) is dropped and made again, so it follows a failover; the retries cover
    the seconds the Sentinels take to promote a replica, longer gaps are the callers' outage handling
    (SCALESPACE_OUTAGE_TOLERANCE_S in the worker). Lua scripts are sent again on a new master by redis-py
    (EVALSHA answered NOSCRIPT: SCRIPT LOAD, then EVALSHA)."""
    import redis
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    return _make_client(settings, redis.Redis, Sentinel, Retry, retries)


def async_redis_client(settings: Any, *, retries: int = 3) -> Any:
    """redis_client's asyncio twin (redis.asyncio, the same options, Sentinels and retries), for the API's event
    loop: its connections belong to the loop that first uses them."""
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel

    plain, managed = _async_connection_classes()
    return _make_client(settings, aredis.Redis, Sentinel, Retry, retries,
                        connection_class=managed if uses_sentinel(settings) else plain)


@lru_cache(maxsize=1)
def _async_connection_classes() -> tuple[Any, Any]:
    """redis.asyncio's connections (plain, and Sentinel-managed) packing commands with hiredis's C packer, as
    the blocking client does when hiredis is installed: redis.asyncio packs in Python, 0.1 ms for the
    submission's script and its 50 arguments, a tenth of that in C. Without hiredis, its own classes."""
    from redis.asyncio.connection import Connection
    from redis.asyncio.sentinel import SentinelManagedConnection
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        return Connection, SentinelManagedConnection
    from redis.connection import HiredisRespSerializer

    pack = HiredisRespSerializer().pack  # str, bytes, int and float as the Python packer writes them

    class Packing:
        def pack_command(self, *args: Any) -> list[bytes]:
            return pack(*args)

    return (type("HiredisPackingConnection", (Packing, Connection), {}),
            type("HiredisPackingSentinelConnection", (Packing, SentinelManagedConnection), {}))


def _make_client(settings: Any, redis_class: Any, sentinel_class: Any, retry_class: Any, retries: int,
                 **options: Any) -> Any:
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    common = dict(
        decode_responses=True, socket_timeout=15, socket_connect_timeout=5, health_check_interval=15,
        retry=retry_class(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError], **options,
    )
    if uses_sentinel(settings):
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
        if settings.redis_sentinel_password:
            sentinel_kwargs["password"] = settings.redis_sentinel_password
        sentinel = sentinel_class(settings.sentinel_hosts(), sentinel_kwargs=sentinel_kwargs)
        return sentinel.master_for(settings.redis_sentinel_master, db=settings.redis_db,
                                   password=settings.redis_password or None, **common)
    url = require_redis_url(settings)
    try:
        return redis_class.from_url(url, **common)
    except ValueError as e:
        raise ScalespaceError(f"SCALESPACE_REDIS_URL={redact(url)!r} is not a valid Redis URL: {e}") from None


def wait_until(check: Callable[[], Any], wait_s: float, describe: Callable[[Exception], str]) -> None:
    """Call `check` until it succeeds or `wait_s` passes, then raise ScalespaceError(describe(last error))."""
    deadline = time.monotonic() + wait_s
    delay, said = 0.2, False
    while True:
        try:
            check()
            return
        except ScalespaceError as e:
            if not _is_unavailable(e):  # a missing bucket or refused credentials will not fix themselves
                raise
            last: Exception = e
        except Exception as e:  # noqa: BLE001 - any failure to reach it means "not yet"
            last = e
        if time.monotonic() + delay > deadline:
            raise ScalespaceError(describe(last)) from None
        if not said:
            log.warning("waiting up to %.0f s: %s", wait_s, describe(last))
            said = True
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _is_unavailable(e: Exception) -> bool:
    return isinstance(e, StoreUnavailable)


def wait_for_redis(settings: Any, client: Any, wait_s: float | None = None) -> None:
    if uses_sentinel(settings):
        fix = ("start them, check SCALESPACE_REDIS_SENTINEL_MASTER (the name in their configuration) and the "
               "passwords SCALESPACE_REDIS_SENTINEL_PASSWORD and SCALESPACE_REDIS_PASSWORD")
    else:
        require_redis_url(settings)
        fix = "start it or fix the URL"
    where = redis_where(settings)
    wait_until(
        client.ping, settings.startup_wait_s if wait_s is None else wait_s,
        lambda e: f"Redis at {where} is unreachable ({_redis_short(e)}); {fix}",
    )


def _redis_short(e: Exception) -> str:
    from redis.sentinel import MasterNotFoundError

    if isinstance(e, MasterNotFoundError):  # its text is the repr of a client
        return "no Sentinel answered with that master: none reachable, or none knows the name"
    return _short(e)


def wait_for_store(settings: Any, store: Any, wait_s: float | None = None) -> None:
    """The store is writable (S3: reachable, bucket present or created, credentials accepted)."""
    if isinstance(store, S3Store) and settings.s3_create_bucket:
        wait_until(store.create_bucket, settings.startup_wait_s if wait_s is None else wait_s, _short)
    wait_until(store.check_writable, settings.startup_wait_s if wait_s is None else wait_s, _short)


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]
