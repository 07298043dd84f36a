"""API keys: shown once, stored hashed, scoped to apps, revocable.

A key reads ``jc_<id>_<secret>``; Redis keeps ``{ns}:apikey:<id>`` -> {sha256(secret), apps,
created_at}. The id lets an operator list and revoke keys without ever seeing a secret again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from .keys import apikey_key

__all__ = ["ApiKey", "ApiKeyStore"]

_PREFIX = "jc_"


def _key(key_id: str) -> str:
    return apikey_key(key_id)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    apps: frozenset[str]  # "*" means every app
    created_at: float
    #: This key's submissions per second; None: the gateway's default.
    rate_per_s: float | None = None

    def allows(self, app: str) -> bool:
        return "*" in self.apps or app in self.apps


class ApiKeyStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def create(self, apps: list[str], *, rate_per_s: float | None = None) -> tuple[str, ApiKey]:
        """Returns (the key, to show once; its record)."""
        apps = sorted({a.strip() for a in apps if a.strip()})
        if not apps:
            raise ValueError("a key needs at least one app (or '*')")
        if rate_per_s is not None and rate_per_s < 0:
            raise ValueError("rate must be >= 0 submissions per second (0: no limit)")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        record: dict[str, str | float] = {
            "digest": _digest(secret),
            "apps": json.dumps(apps),
            "created_at": now,
        }
        if rate_per_s is not None:
            record["rate_per_s"] = rate_per_s
        self.client.hset(_key(key_id), mapping=record)  # type: ignore[arg-type]
        return f"{_PREFIX}{key_id}_{secret}", ApiKey(key_id, frozenset(apps), now, rate_per_s)

    def verify(self, presented: str) -> ApiKey | None:
        if not presented.startswith(_PREFIX) or presented.count("_") < 2:
            return None
        key_id, _, secret = presented[len(_PREFIX) :].partition("_")
        raw: Any = self.client.hgetall(_key(key_id))
        if not raw or not hmac.compare_digest(raw["digest"], _digest(secret)):
            return None
        return _parse(key_id, raw)

    def revoke(self, key_id: str) -> bool:
        return bool(self.client.delete(_key(key_id)))

    def list(self) -> list[ApiKey]:
        out = []
        for name in self.client.scan_iter(match=_key("*")):
            raw: Any = self.client.hgetall(name)
            if raw:
                out.append(_parse(str(name).rsplit(":", 1)[1], raw))
        return sorted(out, key=lambda k: k.created_at)


def _parse(key_id: str, raw: dict[str, str]) -> ApiKey:
    rate = raw.get("rate_per_s")
    return ApiKey(
        key_id,
        frozenset(json.loads(raw["apps"])),
        float(raw["created_at"]),
        None if rate is None else float(rate),
    )
