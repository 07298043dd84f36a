"""Messages set aside for consumers of another job version (rolling deploys; see the fetch
script): dropping those whose request ended while they waited (expired, canceled), so that
``waiting_for_version`` counts only requests that still wait.

Not one script: a message whose attempt is no longer its request's queued one never becomes
current again (a rerun makes a new message), so a check and a later LREM of that exact
message cannot remove a live one.
"""

from __future__ import annotations

from typing import Any

import redis

from .keys import parked_index_key, parked_key, parked_queues_key, record_key

__all__ = ["prune_parked"]

#: Messages looked at per parked list and pass (the rest wait for the next pass).
_SCAN = 1000


def prune_parked(client: redis.Redis) -> int:
    """Remove parked messages of requests that are no longer queued at that attempt; returns
    how many went."""
    removed = 0
    queues: Any = client.smembers(parked_queues_key())
    for queue in queues:
        members: Any = client.smembers(parked_index_key(queue))
        for member in members:
            removed += _prune_list(client, parked_key(queue, member))
            _forget_if_empty(client, parked_key(queue, member), parked_index_key(queue), member)
        _forget_if_empty(client, parked_index_key(queue), parked_queues_key(), queue)
    return removed


def _forget_if_empty(client: redis.Redis, key: str, index: str, member: str) -> None:
    """SREM ``member`` from ``index`` if ``key`` is empty, unless a fetch parked something
    meanwhile (WATCH: its script's write aborts this), which would hide it from every fetch."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(key, index)
            if pipe.exists(key):
                return
            pipe.multi()
            pipe.srem(index, member)
            pipe.execute()
        except redis.WatchError:
            return


def _prune_list(client: redis.Redis, key: str) -> int:
    messages: Any = client.lrange(key, 0, _SCAN - 1)
    if not messages:
        return 0
    pipe = client.pipeline(transaction=False)
    for message in messages:
        pipe.hmget(record_key(message.split(".", 1)[0]), ["status", "attempt"])
    stale = [
        message
        for message, (status, attempt) in zip(messages, pipe.execute(), strict=True)
        if status != "QUEUED" or attempt != _attempt_of(message)
    ]
    if stale:
        pipe = client.pipeline(transaction=False)
        for message in stale:
            pipe.lrem(key, 1, message)
        pipe.execute()
    return len(stale)


def _attempt_of(message: str) -> str | None:
    parts = message.split(".")
    return parts[1] if len(parts) == 3 else None
