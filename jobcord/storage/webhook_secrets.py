"""Per-app webhook signing secrets, with overlap for rotation (every active one signs).

An app without secrets of its own is signed with the default (``JOBCORD_WEBHOOK_SECRET``).
When it gets its first own secret, the default does not stop at once: it keeps signing
beside the new one for ``webhook_default_secret_overlap_s`` (a day by default), counted
from ``{ns}:webhook-secrets-since:{app}``, so receivers can switch to the new secret (Standard
Webhooks receivers accept any one of the space-separated signatures). ``retire_oldest`` ends
that overlap at once (the default is the oldest), then drops the app's oldest own secret.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from .keys import webhook_secrets_key, webhook_secrets_since_key

__all__ = ["WebhookSecrets"]


def _key(app: str) -> str:
    return webhook_secrets_key(app)


class WebhookSecrets:
    def __init__(
        self, client: redis.Redis, default: str | None, *, default_overlap_s: float = 0.0
    ) -> None:
        self.client = client
        self.default = default
        self.default_overlap_s = default_overlap_s

    def active(self, app: str) -> list[str]:
        """The app's own secrets (newest first), then the default while it overlaps them;
        without own secrets, the default; empty: none configured."""
        own: Any = self.client.lrange(_key(app), 0, -1)
        if not own:
            return [self.default] if self.default else []
        out = list(own)
        if self.default and self.default not in out and self._default_overlaps(app):
            out.append(self.default)
        return out

    def _default_overlaps(self, app: str) -> bool:
        since: Any = self.client.get(webhook_secrets_since_key(app))
        return since is not None and time.time() < float(since) + self.default_overlap_s

    def add(self, app: str, secret: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(_key(app), secret)
        # The first own secret starts the default's overlap (a later one keeps the mark).
        pipe.set(webhook_secrets_since_key(app), repr(time.time()), nx=True)
        pipe.execute()

    def retire_oldest(self, app: str) -> str | None:
        """End the overlap: if the default still signs beside the app's own secrets, stop
        it (returns ``"default"``); else drop the oldest own secret when more than one is
        active (returns it). None: nothing to retire."""
        since_key = webhook_secrets_since_key(app)
        since: Any = self.client.get(since_key)
        if since is not None and time.time() < float(since) + self.default_overlap_s:
            self.client.set(since_key, "0")  # over for good: a later add keeps the mark
            return "default"
        if int(self.client.llen(_key(app))) < 2:  # type: ignore[arg-type]
            return None
        old: Any = self.client.rpop(_key(app))
        return str(old) if old is not None else None
