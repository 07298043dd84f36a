"""Live consumers, registered in Redis with a heartbeat so that a vanished one is noticed.

Redis stamps each registration with ``seen_at`` on its own clock (``storage/lua/beat.lua``);
a heartbeat's age is Redis's ``TIME`` minus that, whatever the consumer's host clock says.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from .clock import seen_at
from .keys import consumer_key, consumers_key
from .records import RequestRecord
from .scripts import Scripts

__all__ = [
    "ConsumerRegistry",
    "unserved_reason",
    "queue_unserved_reason",
    "with_heartbeat_ages",
]

#: A consumer that missed this many heartbeats is stale (its registration outlives it by
#: three lease TTLs, so a stopped one shows before it goes).
STALE_AFTER_BEATS = 2.5


def _key(worker_id: str) -> str:
    return consumer_key(worker_id)


class ConsumerRegistry:
    def __init__(self, client: redis.Redis, *, scripts: Scripts | None = None) -> None:
        self.client = client
        self._scripts = scripts  # made on the first heartbeat (readers never need it)
        self._cached: tuple[float, list[dict[str, Any]]] | None = None

    def heartbeat(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """(Re)register, stamped ``seen_at`` by Redis; the entry vanishes ``ttl_s`` after the
        last heartbeat."""
        if self._scripts is None:
            self._scripts = Scripts(self.client)
        self._scripts("beat", "consumer", worker_id, ttl_s, json.dumps(info))

    def remove(self, worker_id: str) -> None:
        self.client.delete(_key(worker_id))
        self.client.srem(consumers_key(), worker_id)

    def live_recent(self, max_age_s: float = 1.0) -> list[dict[str, Any]]:
        """``live()``, read at most once per ``max_age_s`` (for hot paths such as cords)."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > max_age_s:
            self._cached = (now, self.live())
        return self._cached[1]

    def live(self) -> list[dict[str, Any]]:
        ids: Any = sorted(self.client.smembers(consumers_key()))
        if not ids:
            return []
        values: Any = self.client.mget([_key(i) for i in ids])
        gone = [i for i, v in zip(ids, values, strict=True) if v is None]
        if gone:
            self.client.srem(consumers_key(), *gone)
        return [json.loads(v) for v in values if v is not None]


def with_heartbeat_ages(
    consumers: list[dict[str, Any]], now: float, every_s: float
) -> list[dict[str, Any]]:
    """Each registration with ``heartbeat_age_s`` at ``now`` (Redis's clock; None when it
    says no time) and ``stale``: missed :data:`STALE_AFTER_BEATS` heartbeats (``every_s``
    apart unless it says its own ``heartbeat_every_s``). A registration written by an
    older jobcord has no ``seen_at``: its host's ``heartbeat_at`` stands in."""
    out = []
    for c in consumers:
        beat = seen_at(c, "heartbeat_at")
        every = float(c.get("heartbeat_every_s") or every_s)
        age = None if beat is None else max(0.0, now - beat)
        stale = age is None or age > STALE_AFTER_BEATS * every
        out.append({**c, "heartbeat_age_s": age, "stale": stale})
    return out


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
    # Consumers whose job processes cannot start (a crash loop) count no slots and say why.
    broken = [c for c in serving if not c.get("elastic") and c.get("degraded")]
    if broken and not any(c.get("slots") for c in serving):
        return f"no job process serving queue {queue} can start: {broken[0]['degraded']}"
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
