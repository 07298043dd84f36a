"""Live consumers, registered in Redis with a heartbeat so that a vanished one is noticed."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from .keys import CONSUMERS_KEY, consumer_key
from .records import RequestRecord

__all__ = ["ConsumerRegistry", "unserved_reason", "queue_unserved_reason"]

_SET = CONSUMERS_KEY


def _key(worker_id: str) -> str:
    return consumer_key(worker_id)


class ConsumerRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._cached: tuple[float, list[dict[str, Any]]] | None = None

    def heartbeat(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """(Re)register; the entry vanishes ``ttl_s`` after the last heartbeat."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(_key(worker_id), json.dumps(info), px=int(ttl_s * 1000))
        pipe.sadd(_SET, worker_id)
        pipe.execute()

    def remove(self, worker_id: str) -> None:
        self.client.delete(_key(worker_id))
        self.client.srem(_SET, worker_id)

    def live_recent(self, max_age_s: float = 1.0) -> list[dict[str, Any]]:
        """``live()``, read at most once per ``max_age_s`` (for hot paths such as cords)."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > max_age_s:
            self._cached = (now, self.live())
        return self._cached[1]

    def live(self) -> list[dict[str, Any]]:
        ids: Any = sorted(self.client.smembers(_SET))
        if not ids:
            return []
        values: Any = self.client.mget([_key(i) for i in ids])
        gone = [i for i, v in zip(ids, values, strict=True) if v is None]
        if gone:
            self.client.srem(_SET, *gone)
        return [json.loads(v) for v in values if v is not None]


def unserved_reason(record: RequestRecord, consumers: list[dict[str, Any]]) -> str | None:
    """Why no live consumer could start this queued request, or None if one could."""
    return queue_unserved_reason(record.app, record.queue, consumers)


def queue_unserved_reason(app: str, queue: str, consumers: list[dict[str, Any]]) -> str | None:
    """Why no live consumer could start a request of ``app`` on ``queue``, or None."""
    serving = [
        c
        for c in consumers
        if queue in c.get("queues", []) or queue in c.get("fallback_queues", [])
    ]
    if serving and not any(c.get("elastic") and not c.get("slots") for c in serving):
        return None
    if serving and not any(c.get("slots") for c in serving):  # only autoscaled, all at zero
        if any(c.get("starting") for c in serving):
            return f"cold start: app {app!r} had no warm replica; one is starting"
        return (
            f"app {app!r} is scaled to zero; its autoscaler starts a replica for this "
            "request (a cold start)"
        )
    if serving:
        return None
    mine = sorted(
        {
            f"{c['gpu_class']} ({c.get('gpus_per_child', 0)} GPU/child)"
            for c in consumers
            if c.get("app") == app
        }
    )
    others = (
        f"live consumers of app {app!r} serve: {', '.join(mine)}"
        if mine
        else (f"no consumer of app {app!r} is running")
    )
    return f"no live consumer serves queue {queue}; {others}"
