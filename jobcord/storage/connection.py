"""One Redis client per process, from the settings (starting the embedded server if unset).

``JOBCORD_REDIS_URL`` names one server (``redis://``, ``rediss://``, ``unix://``), a
Sentinel-watched primary (``redis+sentinel://``: ``jobcord.storage.topology``) or a Redis Cluster
(``redis+cluster://``: ``jobcord.storage.cluster``; the process then names its keys in the cluster
layout)."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import structlog

from . import keys
from .cluster import async_cluster_client, cluster_client, parse_cluster_url
from .embedded_redis import ensure_embedded_redis
from .settings import Settings
from .topology import async_sentinel_client, parse_sentinel_url, sentinel_client

__all__ = [
    "redis_url",
    "redacted",
    "connect",
    "connect_async",
    "connect_url",
    "connect_async_url",
    "raw_twin",
    "BLOCKING_READ_TIMEOUT_S",
]

#: Socket timeout of jobcord's clients: redis-py's default (5 s) equals our longest block.
BLOCKING_READ_TIMEOUT_S = 30.0


log = structlog.get_logger("jobcord.redis")
_announced: set[str] = set()
_announce_lock = threading.Lock()


def redis_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's (started if need be). Each process logs
    once which Redis it uses, so two processes on two servers are easy to spot."""
    url = settings.redis_url or ensure_embedded_redis(settings.data_dir)
    with _announce_lock:
        if url not in _announced:
            _announced.add(url)
            source = "JOBCORD_REDIS_URL" if settings.redis_url else "embedded"
            log.info("using redis", url=redacted(url), source=source)
    return url


def redacted(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def connect(settings: Settings) -> redis.Redis:
    # health_check_interval keeps long-idle pooled connections honest across Redis restarts;
    # the socket timeout must exceed our longest blocking read (XREAD/BLPOP block <= 5 s).
    return connect_url(
        redis_url(settings),
        decode_responses=True,
        health_check_interval=30,
        socket_timeout=BLOCKING_READ_TIMEOUT_S,
        socket_connect_timeout=5,
        max_connections=settings.redis_max_connections,
    )


def connect_url(url: str, **kwargs: object) -> redis.Redis:
    """A client of the Redis ``url`` names (one server, a sentinel-watched primary, or the
    node of a cluster that serves jobcord's slot)."""
    cluster = parse_cluster_url(url)
    keys.use_cluster_layout(cluster is not None)
    if cluster is not None:
        return cluster_client(cluster, **kwargs)
    target = parse_sentinel_url(url)
    if target is not None:
        return sentinel_client(target, **kwargs)
    return redis.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]


def connect_async(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    """The asyncio client of the same Redis (the gateway's event loop)."""
    return connect_async_url(redis_url(settings), **kwargs)


def connect_async_url(
    url: str, *, pool_wait_s: float | None = None, **kwargs: object
) -> aioredis.Redis:
    """The asyncio client of the Redis ``url`` names; ``pool_wait_s``: a pool that waits that
    long for a free connection instead of refusing one past ``max_connections``."""
    cluster = parse_cluster_url(url)
    keys.use_cluster_layout(cluster is not None)
    if cluster is not None:
        return async_cluster_client(cluster, pool_wait_s=pool_wait_s, **kwargs)
    target = parse_sentinel_url(url)
    if target is not None:  # the sentinels' pool
        return async_sentinel_client(target, **kwargs)
    if pool_wait_s is not None:
        pool = aioredis.BlockingConnectionPool.from_url(url, timeout=pool_wait_s, **kwargs)
        return aioredis.Redis(connection_pool=pool)
    return aioredis.Redis.from_url(url, **kwargs)  # type: ignore[arg-type]


def raw_twin(client: redis.Redis) -> redis.Redis:
    """A client of the same Redis whose replies are bytes (binary values)."""
    pool = client.connection_pool
    manager = getattr(pool, "sentinel_manager", None)
    if manager is not None:  # a sentinel pool: ask the same sentinels for the same primary
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
        kwargs["decode_responses"] = False
        service = pool.service_name  # type: ignore[attr-defined]
        return manager.master_for(service, connection_pool_class=type(pool), **kwargs)
    return redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            **{**pool.connection_kwargs, "decode_responses": False},
        )
    )
