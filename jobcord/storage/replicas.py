"""The app replica count that every host's autoscaler shares (``storage/lua/replicas.lua``).

A replica is one warm job process of an app. Each host claims a member for each one it
starts and renews them with its heartbeat; a host that dies stops renewing and its members
expire after ``ttl_s``, so the count heals itself.
"""

from __future__ import annotations

from typing import Any

from .scripts import Scripts

__all__ = ["ReplicaLeases"]


class ReplicaLeases:
    def __init__(self, scripts: Scripts, ttl_s: float) -> None:
        self.scripts = scripts
        self.ttl_s = ttl_s

    def _run(self, op: str, app: str, limit: int, *members: str) -> tuple[str, int]:
        reply: Any = self.scripts("replicas", op, app, self.ttl_s, limit, *members)
        return str(reply[0]), int(reply[1])

    def acquire(self, app: str, member: str, limit: int) -> bool:
        """Claim a replica of ``app`` if fewer than ``limit`` are live on all hosts."""
        return self._run("acquire", app, limit, member)[0] == "ok"

    def release(self, app: str, member: str) -> None:
        """Give a replica up."""
        self._run("release", app, 0, member)

    def renew(self, app: str, members: list[str]) -> int:
        """Extend this host's claims; returns the live count on all hosts."""
        return self._run("renew", app, 0, *members)[1]

    def count(self, app: str) -> int:
        return self._run("count", app, 0)[1]
