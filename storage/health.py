"""Loop health of live jobcord processes, one expiring key per process.

Each scheduler and consumer process writes its report (``scheduler.health``) every
``health_interval_s``; a process that stops cleanly removes it, one that dies leaves it to
expire. ``/healthz`` and ``jobcord health`` read them all.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

import redis

from .keys import HEALTH_KEY, WEBHOOKS_DUE_KEY, health_key

__all__ = ["ProcessHealthStore", "WebhookBacklog"]


class WebhookBacklog(NamedTuple):
    """Webhooks due now: how many, and since when the oldest waits (epoch s)."""

    due: int
    oldest_due_at: float | None


class ProcessHealthStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def publish(self, process_id: str, report: dict[str, Any], ttl_s: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(health_key(process_id), json.dumps(report), px=max(1, int(ttl_s * 1000)))
        pipe.sadd(HEALTH_KEY, process_id)
        pipe.execute()

    def remove(self, process_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(health_key(process_id))
        pipe.srem(HEALTH_KEY, process_id)
        pipe.execute()

    def reports(self) -> list[dict[str, Any]]:
        """Every unexpired report; ids whose key expired are dropped from the index."""
        ids: Any = sorted(self.client.smembers(HEALTH_KEY))
        if not ids:
            return []
        values: Any = self.client.mget([health_key(i) for i in ids])
        gone = [i for i, v in zip(ids, values, strict=True) if v is None]
        if gone:
            self.client.srem(HEALTH_KEY, *gone)
        return [json.loads(v) for v in values if v is not None]

    def webhook_backlog(self) -> WebhookBacklog:
        """Webhooks whose delivery is due: a backlog with no scheduler alive never drains."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zcount(WEBHOOKS_DUE_KEY, "-inf", time.time())
        pipe.zrange(WEBHOOKS_DUE_KEY, 0, 0, withscores=True)
        due, oldest = pipe.execute()
        return WebhookBacklog(int(due), float(oldest[0][1]) if due and oldest else None)
