"""The FastAPI gateway: one app's jobs and cords over HTTP, with keys, limits and clear 4xx."""

from __future__ import annotations

import difflib
import math
from contextlib import asynccontextmanager
from typing import Any

import redis
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobcord.scheduler.jobspec import AppRegistry
from jobcord.storage.apikeys import ApiKeyStore
from jobcord.storage.connection import connect_async, redis_url
from jobcord.storage.errors import JobcordError, RedisUnavailable, TooManyRequests
from jobcord.storage.ratelimit import RateLimiter
from jobcord.storage.registry import ConsumerRegistry
from jobcord.storage.settings import Settings

from ..client import RedisClient
from .auth import Authenticator
from .bodies import tidy_errors
from .context import Gateway
from .cords import cord_router
from .dashboard import dashboard_router, mount_dashboard_static
from .holds import WaitLimits
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
        # One pooled connection for each wait it admits, and a few for their cleanups.
        follower=Follower(redis_url(settings), max_connections=settings.api_max_waits + 8),
        consumers=ConsumerRegistry(client.redis),
        auth=Authenticator(ApiKeyStore(client.redis), required=require_auth),
        rates=RateLimiter(client.redis, functions=settings.redis_functions),
        waits=WaitLimits(total=settings.api_max_waits, per_key=settings.api_max_waits_per_key),
        submitter=connect_async(
            settings,
            decode_responses=True,
            socket_timeout=30,
            socket_connect_timeout=5,
            max_connections=settings.redis_max_connections,
        ),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if not require_auth:
            log.warning("API KEYS ARE OFF: anyone who can reach this port can run jobs (dev only)")
        client.store.scripts("renew", 0)  # the scripts are there before the loop sends any
        yield
        await gw.follower.close()
        await gw.submitter.aclose()

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
        elif isinstance(exc, RedisUnavailable):  # refused or unconfirmed: retry shortly
            headers["Retry-After"] = "1"
        body = {"detail": str(exc), "type": type(exc).__name__}
        return JSONResponse(body, status, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": tidy_errors(exc.errors())}, 422)

    @api.exception_handler(RecursionError)
    async def too_deep(_: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse({"detail": "JSON nested too deeply", "type": "TooDeep"}, 422)

    @api.exception_handler(redis.RedisError)
    async def redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        # Nothing was half-done: every change is one script, which either ran or did not.
        log.warning("redis unavailable", error=str(exc))
        body = {"detail": f"Redis is unavailable, try again: {exc}", "type": "Unavailable"}
        return JSONResponse(body, 503, headers={"Retry-After": "1"})

    @api.exception_handler(StarletteHTTPException)
    async def not_found(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail: Any = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = _no_route(app, request.method, request.url.path)
        return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)

    @api.exception_handler(ValueError)
    async def value_error(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "type": "ValueError"}, 422)

    routers = (ops_router(gw), request_router(gw), job_router(gw), cord_router(gw))
    for router in (*routers, dashboard_router(gw)):
        api.include_router(router)
    mount_dashboard_static(api)
    api.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    return api


def _no_route(app: AppRegistry, method: str, path: str) -> str:
    """A 404 that helps: the cord paths this app serves, and the closest to what was asked."""
    cords = {
        f"/apps/{app.name}{s.public_api_path}": s.method
        for s in app.jobs.values()
        if s.kind == "cord"
    }
    if not path.startswith("/apps/") or not cords:
        return f"no route {method} {path}; see /docs"
    close = difflib.get_close_matches(path, list(cords), n=1)
    hint = f"; did you mean {cords[close[0]]} {close[0]}?" if close else ""
    known = ", ".join(f"{m} {p}" for p, m in sorted(cords.items()))
    return f"no cord at {method} {path}{hint} (this API serves: {known})"
