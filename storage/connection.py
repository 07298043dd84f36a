"""One Redis client per process, from the settings (starting the embedded server if unset)."""

from __future__ import annotations

import redis

from .embedded_redis import ensure_embedded_redis
from .settings import Settings

__all__ = ["redis_url", "connect", "BLOCKING_READ_TIMEOUT_S"]

#: Socket timeout of jobcord's clients: redis-py's default (5 s) equals our longest block.
BLOCKING_READ_TIMEOUT_S = 30.0


def redis_url(settings: Settings) -> str:
    return settings.redis_url or ensure_embedded_redis(settings.data_dir)


def connect(settings: Settings) -> redis.Redis:
    # health_check_interval keeps long-idle pooled connections honest across Redis restarts;
    # the socket timeout must exceed our longest blocking read (XREAD/BLPOP block <= 5 s).
    return redis.Redis.from_url(
        redis_url(settings),
        decode_responses=True,
        health_check_interval=30,
        socket_timeout=BLOCKING_READ_TIMEOUT_S,
        socket_connect_timeout=5,
    )
