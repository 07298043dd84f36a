"""Whether a Redis is set up as jobs need it: said once, as a warning, when a process starts.

jobcord cannot change a Redis it does not own (and managed services often refuse CONFIG), so a
consumer reads the settings that decide whether requests survive and how much memory each one
takes, and names any that differ from what jobcord's own Redis setups use.
"""

from __future__ import annotations

from typing import Any

import redis

from .embedded_redis import STREAM_NODE_MAX_BYTES

__all__ = ["redis_config_problems", "read_redis_config"]


def redis_config_problems(config: dict[str, str]) -> list[str]:
    """What is wrong with ``config`` (CONFIG GET's answer) for jobs; missing keys are skipped."""
    problems = []
    policy = config.get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy!r}: under memory pressure Redis may evict request "
            "records and queues; set 'noeviction'"
        )
    if config.get("appendonly") == "no":
        problems.append(
            "appendonly is 'no': a Redis restart loses every queued and running request; "
            "set 'appendonly yes' with 'appendfsync everysec'"
        )
    node = config.get("stream-node-max-bytes")
    if node is not None and node.isdigit() and int(node) > STREAM_NODE_MAX_BYTES:
        problems.append(
            f"stream-node-max-bytes is {node}: each request's event stream takes a node that "
            f"large (about 6 KB per finished request at 4096); set {STREAM_NODE_MAX_BYTES}"
        )
    return problems


def read_redis_config(client: redis.Redis) -> dict[str, str]:
    """The settings redis_config_problems looks at; {} where CONFIG is not allowed."""
    out: dict[str, str] = {}
    for name in ("maxmemory-policy", "appendonly", "stream-node-max-bytes"):
        try:
            reply: Any = client.config_get(name)
        except redis.ResponseError:  # managed Redis without CONFIG: nothing to say
            return {}
        out.update({_text(k): _text(v) for k, v in reply.items()})
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
