"""Redis's clock: the one clock that times written by different hosts are compared on.

Hosts' clocks disagree (a VM resumed from a snapshot, NTP not running, a container on a
skewed node): a time written by one host and read against another's ``time.time()`` can be
off by minutes. So the scripts stamp times with Redis's ``TIME`` (``storage/lua/prelude.lua``),
and a reader that compares such a stamp with "now" asks Redis for now too, once per view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

__all__ = ["redis_now", "seen_at"]


def redis_now(client: redis.Redis) -> float:
    """Redis's ``TIME``, in epoch seconds."""
    reply: Any = client.time()
    seconds, micros = reply
    return float(seconds) + float(micros) / 1e6


def seen_at(report: Mapping[str, Any], own: str) -> float | None:
    """When Redis stored ``report`` (its ``seen_at``, stamped by ``storage/lua/beat.lua`` on
    Redis's clock); for a report written by an older jobcord, which has no stamp, its
    writer's own time ``own`` (on that host's clock), or None without either."""
    for name in ("seen_at", own):
        value = report.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None
