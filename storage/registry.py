"""Live consumers, registered in Redis with a heartbeat so that a vanished one is noticed."""

from __future__ import annotations

import json
from typing import Any

import redis

from .keys import NAMESPACE
from .records import RequestRecord

__all__ = ["ConsumerRegistry", "unserved_reason"]

_SET = f"{NAMESPACE}:consumers"


def _key(worker_id: str) -> str:
    return f"{NAMESPACE}:consumer:{worker_id}"


class ConsumerRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def heartbeat(self, worker_id: str, info: dict[str, Any], ttl_s: float) -> None:
        """(Re)register; the entry vanishes ``ttl_s`` after the last heartbeat."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(_key(worker_id), json.dumps(info), px=int(ttl_s * 1000))
        pipe.sadd(_SET, worker_id)
        pipe.execute()

    def remove(self, worker_id: str) -> None:
        self.client.delete(_key(worker_id))
        self.client.srem(_SET, worker_id)

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
    serving = [
        c
        for c in consumers
        if record.queue in c.get("queues", []) or record.queue in c.get("fallback_queues", [])
    ]
    if serving:
        return None
    mine = sorted(
        {
            f"{c['gpu_class']} ({c.get('gpus_per_child', 0)} GPU/child)"
            for c in consumers
            if c.get("app") == record.app
        }
    )
    others = (
        f"live consumers of app {record.app!r} serve: {', '.join(mine)}"
        if mine
        else (f"no consumer of app {record.app!r} is running")
    )
    return f"no live consumer serves queue {record.queue}; {others}"
