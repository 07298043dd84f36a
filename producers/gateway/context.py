"""What every gateway route shares: settings, the app, clients, auth."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException

from scheduler.jobspec import AppRegistry
from storage.apikeys import ApiKey
from storage.errors import RequestNotFound
from storage.ids import is_request_id
from storage.ratelimit import RateLimiter
from storage.records import RequestRecord
from storage.registry import ConsumerRegistry
from storage.settings import Settings

from ..client import RedisClient
from .auth import Authenticator
from .holds import WaitLimits
from .waiting import Follower

__all__ = ["Gateway"]


@dataclass
class Gateway:
    settings: Settings
    app: AppRegistry
    client: RedisClient
    follower: Follower
    consumers: ConsumerRegistry
    auth: Authenticator
    rates: RateLimiter
    #: Open event streams and waiting calls, per key and in all.
    waits: WaitLimits

    def record_for(self, request_id: str, key: ApiKey, *, urls: bool = False) -> RequestRecord:
        """The request, if this key may see it; otherwise exactly what an unknown id gets.
        ``urls``: sign download URLs for stored results (only the status route needs them).
        An id that is not one (``storage.ids``) is not found, before Redis is asked."""
        if not is_request_id(request_id):
            raise HTTPException(404, f"no request with id {request_id!r}")
        try:
            record = self.client.get(request_id) if urls else self.client.store.get(request_id)
        except RequestNotFound:
            raise HTTPException(404, f"no request with id {request_id!r}") from None
        if not key.allows(record.app):
            raise HTTPException(404, f"no request with id {request_id!r}")
        return record

    def check_app(self, app: str, key: ApiKey) -> None:
        if app != self.app.name or not key.allows(app):
            raise HTTPException(404, f"no app named {app!r}")

    def admit(self, app: str, key: ApiKey) -> None:
        """A submission: the key must see the app and be within its rate (else 429)."""
        self.check_app(app, key)
        rate = self.settings.api_rate_per_s if key.rate_per_s is None else key.rate_per_s
        burst = self.settings.api_rate_burst or max(1, int(2 * rate))
        self.rates.take(key.key_id, rate, burst)
