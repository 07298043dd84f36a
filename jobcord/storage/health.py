"""Loop health (and reported problems) of live jobcord processes, one expiring key each.

Each scheduler and consumer process writes its report (``jobcord.scheduler.health``) every
``health_interval_s``; a process that stops cleanly removes it, one that dies leaves it to
expire. ``/healthz`` and ``jobcord health`` read them all. Redis stamps each report with
``seen_at`` on its own clock (``storage/lua/beat.lua``): how long a process has been silent is
judged on Redis's clock, whatever its host's says.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import redis

from .clock import redis_now
from .keys import health_index_key, health_key, webhooks_due_key
from .scripts import Scripts

__all__ = ["ProcessHealthStore", "WebhookBacklog"]


class WebhookBacklog(NamedTuple):
    """Webhooks due now: how many, and since when the oldest waits (epoch s)."""

    due: int
    oldest_due_at: float | None


class ProcessHealthStore:
    def __init__(self, client: redis.Redis, *, functions: bool = True) -> None:
        self.client = client
        self._functions = functions
        self._scripts: Scripts | None = None  # only a publisher runs the script

    def publish(self, process_id: str, report: dict[str, Any], ttl_s: float) -> None:
        """Write ``report`` (stamped ``seen_at`` by Redis) to expire ``ttl_s`` later."""
        if self._scripts is None:
            self._scripts = Scripts(self.client, functions=self._functions)
        self._scripts("beat", "health", process_id, ttl_s, json.dumps(report))

    def remove(self, process_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(health_key(process_id))
        pipe.srem(health_index_key(), process_id)
        pipe.execute()

    def reports(self) -> list[dict[str, Any]]:
        """Every unexpired report; ids whose key expired are dropped from the index."""
        ids: Any = sorted(self.client.smembers(health_index_key()))
        if not ids:
            return []
        values: Any = self.client.mget([health_key(i) for i in ids])
        gone = [i for i, v in zip(ids, values, strict=True) if v is None]
        if gone:
            self.client.srem(health_index_key(), *gone)
        return [json.loads(v) for v in values if v is not None]

    def now(self) -> float:
        """Now on Redis's clock: what the reports' ``seen_at`` compare with."""
        return redis_now(self.client)

    def webhook_backlog(self, now: float | None = None) -> WebhookBacklog:
        """Webhooks whose delivery is due at ``now`` (Redis's clock, read when not given): a
        backlog with no scheduler alive never drains."""
        now = self.now() if now is None else now
        pipe = self.client.pipeline(transaction=False)
        pipe.zcount(webhooks_due_key(), "-inf", now)
        pipe.zrange(webhooks_due_key(), 0, 0, withscores=True)
        due, oldest = pipe.execute()
        return WebhookBacklog(int(due), float(oldest[0][1]) if due and oldest else None)
