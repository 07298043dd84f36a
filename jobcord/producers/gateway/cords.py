"""Cords: /apps/{app}{path}, through the queue to a consumer and back to the waiting caller.

A caller that disconnects cancels its request. Streaming cords answer as server-sent events,
one event per item (``scheduler.outputs.chunk_event``: JSON items as ``data:`` JSON, bytes as
``event: bytes`` with base64 data), then ``event: end`` (or ``event: error``). Every call
holds one of its key's waiting places (``holds.WaitLimits``) until its response ends.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from jobcord.scheduler.jobspec import JobSpec
from jobcord.scheduler.outputs import chunk_event
from jobcord.storage.apikeys import ApiKey
from jobcord.storage.registry import queue_unserved_reason
from jobcord.storage.statuses import Status

from ..client import SubmitOptions
from .context import Gateway
from .holds import HeldStream
from .requests import sse

__all__ = ["cord_router"]

_FAILURE_CODES = {
    Status.FAILED: 500,
    Status.TIMED_OUT: 504,
    Status.CANCELED: 409,
    Status.EXPIRED: 503,
}


async def _until_done_or_gone(gw: Gateway, request: Request, request_id: str, limit_s: float):
    """Wait for the end; if the caller goes away first, cancel the request."""
    waiter = asyncio.ensure_future(gw.follower.wait_terminal(request_id, limit_s))
    try:
        while not waiter.done():
            if await request.is_disconnected():
                waiter.cancel()
                await run_in_threadpool(gw.client.cancel, request_id, 0)  # no wait: told
                return None
            await asyncio.wait({waiter}, timeout=0.25)
        return waiter.result()
    finally:
        if not waiter.done():
            waiter.cancel()


async def _payload(request: Request) -> Any:
    if request.method == "GET":
        return dict(request.query_params)
    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"invalid JSON: {exc}"}]
        ) from None


def _add_cord(router: APIRouter, gw: Gateway, spec: JobSpec) -> None:
    Key = Annotated[ApiKey, Depends(gw.auth)]  # noqa: N806
    limit_s = min(gw.settings.api_max_wait_s, (spec.timeout_s or gw.settings.api_max_wait_s) + 60)

    async def submit(data: dict[str, Any]) -> str:
        sub = await run_in_threadpool(gw.client.submit, spec, data, SubmitOptions())
        return sub.request_id

    async def call(request: Request, key: Key) -> Response:
        gw.admit(spec.app, key)
        data = spec.signature.validate_input(await _payload(request))  # bad input: 422 first
        live = await run_in_threadpool(gw.consumers.live_recent)
        unserved = queue_unserved_reason(spec.app, spec.queue, live)
        if unserved is not None:  # a caller waiting on nothing: say so now, queue nothing
            raise HTTPException(
                503, f"cord {spec.name!r} cannot run now: {unserved}", {"Retry-After": "5"}
            )
        release = gw.waits.acquire(key.key_id)  # before anything is queued (429, nothing runs)
        streaming = False
        try:
            request_id = await submit(data)
            if spec.stream:
                streaming = True  # the response gives the place back when it ends
                return HeldStream(
                    _relay(gw, spec, request_id),
                    release,
                    media_type="text/event-stream",
                    headers={"X-Request-Id": request_id},
                )
            return await finish(request, request_id)
        finally:
            if not streaming:
                release()

    async def finish(request: Request, request_id: str) -> Response:
        status = await _until_done_or_gone(gw, request, request_id, limit_s)
        if status is None:
            await run_in_threadpool(gw.client.cancel, request_id, 0)
            return JSONResponse(
                {"detail": f"cord did not finish within {limit_s} s", "request_id": request_id},
                504,
            )
        record = await run_in_threadpool(gw.client.get, request_id)
        headers = {"X-Request-Id": request_id}
        if status is not Status.SUCCEEDED:
            body = {"request_id": request_id, "status": status, "error": record.public()["error"]}
            return JSONResponse(body, _FAILURE_CODES[status], headers=headers)
        if record.result is not None:
            data = await run_in_threadpool(gw.client.results.get_bytes, record.result.key)
            return Response(data, media_type=record.result.content_type, headers=headers)
        return JSONResponse(record.output, 200, headers=headers)

    model = spec.signature.public_model
    extra = None
    if spec.method != "GET":
        extra = {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": model.model_json_schema()}},
            }
        }
    router.add_api_route(
        f"/apps/{spec.app}{spec.public_api_path}",
        call,
        methods=[spec.method],
        name=f"cord {spec.name}",
        summary=f"cord {spec.app}.{spec.name}" + (" (server-sent events)" if spec.stream else ""),
        tags=[f"cords: {spec.app}"],
        openapi_extra=extra,
    )


async def _relay(gw: Gateway, spec: JobSpec, request_id: str) -> AsyncIterator[str]:
    finished = False
    try:
        async for kind, value in gw.follower.stream(request_id):
            if kind == "chunk":
                event, data = chunk_event(spec.signature, value)
                yield sse(data, event)
            else:
                finished = True
                if value is Status.SUCCEEDED:
                    yield sse({"request_id": request_id, "status": value}, "end")
                else:
                    record = await run_in_threadpool(gw.client.get, request_id)
                    yield sse(
                        {
                            "request_id": request_id,
                            "status": value,
                            "error": record.public()["error"],
                        },
                        "error",
                    )
    finally:
        if not finished:  # the caller went away: stop the work it asked for
            # A plain call: in a cancelled anyio scope every further await is cancelled too.
            gw.client.cancel(request_id, 0)  # on the loop: never wait here


def cord_router(gw: Gateway) -> APIRouter:
    router = APIRouter()
    for spec in gw.app.jobs.values():
        if spec.kind == "cord":
            _add_cord(router, gw, spec)
    return router
