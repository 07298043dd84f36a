"""The FastAPI gateway: one app's jobs and cords over HTTP, with keys, limits and clear 4xx."""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from scheduler.jobspec import AppRegistry
from storage.apikeys import ApiKeyStore
from storage.connection import redis_url
from storage.errors import JobcordError, TooManyRequests
from storage.ratelimit import RateLimiter
from storage.registry import ConsumerRegistry
from storage.settings import Settings

from ..client import RedisClient
from .auth import Authenticator
from .context import Gateway
from .cords import cord_router
from .jobs import job_router
from .limits import BodyLimit
from .ops import ops_router
from .requests import request_router
from .waiting import Follower

__all__ = ["create_app"]

log = structlog.get_logger("jobcord.api")


def create_app(app: AppRegistry, settings: Settings, *, require_auth: bool = True) -> FastAPI:
    client = RedisClient(settings)
    gw = Gateway(
        settings=settings,
        app=app,
        client=client,
        follower=Follower(redis_url(settings)),
        consumers=ConsumerRegistry(client.redis),
        auth=Authenticator(ApiKeyStore(client.redis), required=require_auth),
        rates=RateLimiter(client.redis),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if not require_auth:
            log.warning("API KEYS ARE OFF: anyone who can reach this port can run jobs (dev only)")
        yield
        await gw.follower.close()

    api = FastAPI(
        title=f"jobcord: {app.name}",
        description="Jobs and cords of this app, through GPU-class queues.",
        lifespan=lifespan,
    )
    api.state.gateway = gw

    @api.exception_handler(JobcordError)
    async def jobcord_error(_: Request, exc: JobcordError) -> JSONResponse:
        status = exc.http_status if exc.http_status < 500 else 503
        headers = {}
        if isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        body = {"detail": str(exc), "type": type(exc).__name__}
        return JSONResponse(body, status, headers=headers)

    @api.exception_handler(RecursionError)
    async def too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse({"detail": "JSON nested too deeply", "type": "TooDeep"}, 422)

    @api.exception_handler(ValueError)
    async def value_error(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "type": "ValueError"}, 422)

    for router in (ops_router(gw), request_router(gw), job_router(gw), cord_router(gw)):
        api.include_router(router)
    api.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    return api
