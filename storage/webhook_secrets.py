"""Per-app webhook signing secrets, with overlap for rotation (every active one signs)."""

from __future__ import annotations

from typing import Any

import redis

from .keys import NAMESPACE

__all__ = ["WebhookSecrets"]


def _key(app: str) -> str:
    return f"{NAMESPACE}:webhook-secrets:{app}"


class WebhookSecrets:
    def __init__(self, client: redis.Redis, default: str | None) -> None:
        self.client = client
        self.default = default

    def active(self, app: str) -> list[str]:
        """The app's own secrets (newest first), else the default; empty: none configured."""
        own: Any = self.client.lrange(_key(app), 0, -1)
        if own:
            return list(own)
        return [self.default] if self.default else []

    def add(self, app: str, secret: str) -> None:
        self.client.lpush(_key(app), secret)

    def retire_oldest(self, app: str) -> str | None:
        """End the overlap: drop the oldest secret, if more than one is active."""
        if int(self.client.llen(_key(app))) < 2:  # type: ignore[arg-type]
            return None
        old: Any = self.client.rpop(_key(app))
        return str(old) if old is not None else None
