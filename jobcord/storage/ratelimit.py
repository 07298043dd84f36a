"""Per-API-key submission rate limits: a token bucket per key in Redis (one atomic script)."""

from __future__ import annotations

from typing import Any

import redis

from .errors import TooManyRequests
from .keys import rate_key
from .scripts import Scripts

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, client: redis.Redis, *, functions: bool = True) -> None:
        self._scripts = Scripts(client, functions=functions)

    def take(self, key_id: str, rate_per_s: float, burst: int) -> None:
        """Spend one submission of ``key_id``; raise TooManyRequests (with Retry-After) if
        its bucket is empty. ``rate_per_s`` <= 0 means no limit."""
        if rate_per_s <= 0:
            return
        bucket = rate_key(key_id)
        reply: Any = self._scripts("rate", bucket, rate_per_s, max(1, burst))
        allowed, wait_s = int(reply[0]), float(reply[1])
        if not allowed:
            raise TooManyRequests(
                f"API key {key_id} is over its rate of {rate_per_s:g} submissions/s "
                f"(burst {max(1, burst)}); retry in {wait_s:.2f} s",
                retry_after_s=wait_s,
            )
