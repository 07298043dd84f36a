"""What every gateway route shares: settings, the app, clients, auth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from jobcord.scheduler.jobspec import AppRegistry, JobSpec
from jobcord.scheduler.payloads import is_binary
from jobcord.storage import durability
from jobcord.storage.apikeys import ApiKey
from jobcord.storage.errors import RequestNotFound
from jobcord.storage.ids import is_request_id
from jobcord.storage.keys import record_key
from jobcord.storage.ratelimit import RateLimiter
from jobcord.storage.records import RequestRecord
from jobcord.storage.registry import ConsumerRegistry
from jobcord.storage.requests import Submission
from jobcord.storage.settings import Settings

from ..client import RedisClient
from ..options import SubmitOptions
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
    #: Submissions from the event loop itself (no thread hop): decoded replies.
    submitter: aioredis.Redis

    async def submit_nowait(
        self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions
    ) -> Submission | None:
        """Submit on the event loop when nothing else must be asked first (no webhook to
        check, no binary input for the result store, no rate to spend): one command on the
        gateway's own async connection. None: take the thread path (it also loads the
        scripts where a Redis lost them, and waits for replicas when submits need them)."""
        if opts.webhook_endpoint is not None or is_binary(input_json):
            return None
        if durability.wait_command(self.settings) is not None:
            return None
        request = self.client.request(spec, input_json, opts)
        if not self.client.store.scripts.uses_functions:
            return None
        try:
            reply = await self.submitter.execute_command(*self.client.store.submit_command(request))
        except redis.ResponseError as exc:
            if "function not found" in str(exc).lower():
                return None
            raise
        return self.client.store.submitted(request, reply)

    def record_for(self, request_id: str, key: ApiKey, *, urls: bool = False) -> RequestRecord:
        """The request, if this key may see it; otherwise exactly what an unknown id gets.
        ``urls``: sign download URLs for stored results (only the status route needs them).
        An id that is not one (``jobcord.storage.ids``) is not found, before Redis is asked."""
        if not is_request_id(request_id):
            raise HTTPException(404, f"no request with id {request_id!r}")
        try:
            record = self.client.get(request_id) if urls else self.client.store.get(request_id)
        except RequestNotFound:
            raise HTTPException(404, f"no request with id {request_id!r}") from None
        if not key.allows(record.app):
            raise HTTPException(404, f"no request with id {request_id!r}")
        return record

    async def record_nowait(self, request_id: str) -> RequestRecord:
        """The record as GET returns it, read on the event loop where it can be: one with
        stored results (URLs to sign) or children (a tree to read) takes a worker thread."""
        raw: Any = await self.submitter.hgetall(record_key(request_id))
        if not raw:
            raise RequestNotFound(request_id)
        record = RequestRecord.from_hash(raw)
        if record.result or record.files or record.child_count:
            return await run_in_threadpool(self.client.get, request_id)
        return record

    def check_app(self, app: str, key: ApiKey) -> None:
        if app != self.app.name or not key.allows(app):
            raise HTTPException(404, f"no app named {app!r}")

    def admit(self, app: str, key: ApiKey) -> None:
        """A submission: the key must see the app and be within its rate (else 429)."""
        self.check_app(app, key)
        rate = self.rate_of(key)
        burst = self.settings.api_rate_burst or max(1, int(2 * rate))
        self.rates.take(key.key_id, rate, burst)

    def rate_of(self, key: ApiKey) -> float:
        """The key's submissions per second (<= 0: no limit)."""
        return self.settings.api_rate_per_s if key.rate_per_s is None else key.rate_per_s
