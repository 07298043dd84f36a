"""One Redis client per process, from the settings (starting the embedded server if unset)."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import redis
import structlog

from .embedded_redis import ensure_embedded_redis
from .settings import Settings

__all__ = ["redis_url", "redacted", "connect", "BLOCKING_READ_TIMEOUT_S"]

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
    return redis.Redis.from_url(
        redis_url(settings),
        decode_responses=True,
        health_check_interval=30,
        socket_timeout=BLOCKING_READ_TIMEOUT_S,
        socket_connect_timeout=5,
        max_connections=settings.redis_max_connections,
    )
