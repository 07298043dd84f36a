"""GET/DELETE /v1/requests/{id}, its events (SSE) and its stored output."""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from storage.apikeys import ApiKey

from .context import Gateway
from .holds import HeldStream

__all__ = ["request_router", "sse"]


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event: ``data`` (JSON-encoded unless text) split into ``data:`` lines
    at every line break, so that no value can end the event or forge another."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return head + "".join(f"data: {line}\n" for line in lines) + "\n"


def request_router(gw: Gateway) -> APIRouter:
    router = APIRouter(tags=["requests"])
    Key = Annotated[ApiKey, Depends(gw.auth)]  # noqa: N806

    @router.get("/v1/requests")
    def list_requests(
        key: Key,
        app: Annotated[str, Query(min_length=1, max_length=128)],
        status: Annotated[str, Query(pattern="^FAILED$", description="Only FAILED for now")],
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """The dead-letter view: an app's FAILED requests, newest first."""
        gw.check_app(app, key)
        return {"requests": [r.public() for r in gw.client.store.failed(app, limit=limit)]}

    @router.post("/v1/requests/{request_id}/retry", status_code=202)
    def retry_request(request_id: str, key: Key) -> dict[str, Any]:
        """Run a FAILED, TIMED_OUT, CANCELED or EXPIRED request again: same id, same input,
        admitted like a submission (the key's rate, the app's in-flight cap)."""
        record = gw.record_for(request_id, key)
        gw.admit(record.app, key)
        attempt = gw.client.rerun(request_id, record.app)
        return {"request_id": request_id, "status": "QUEUED", "attempt": attempt}

    @router.get("/v1/requests/{request_id}")
    def get_request(request_id: str, key: Key) -> dict[str, Any]:
        """The request: status, times, attempts, output or result URLs, error."""
        return gw.record_for(request_id, key, urls=True).public()

    @router.delete("/v1/requests/{request_id}")
    def cancel_request(request_id: str, key: Key) -> dict[str, Any]:
        """Cancel: a queued request never runs; a running one is stopped by its consumer."""
        record = gw.record_for(request_id, key)
        if record.is_terminal:
            raise HTTPException(409, f"request {request_id} already ended {record.status.value}")
        status = gw.client.cancel(request_id)
        return {"request_id": request_id, "status": status, "cancel_requested": True}

    @router.post("/v1/requests/{request_id}/webhook", status_code=202)
    def redeliver_webhook(request_id: str, key: Key) -> dict[str, Any]:
        """Deliver the completion webhook again (e.g. after the receiver was fixed)."""
        record = gw.record_for(request_id, key)
        if not record.webhook_endpoint:
            raise HTTPException(409, f"request {request_id} has no webhook_endpoint")
        if not record.is_terminal:
            raise HTTPException(409, f"request {request_id} has not finished yet")
        gw.client.store.webhook_again(request_id)
        return {"request_id": request_id, "webhook_status": "PENDING"}

    @router.get("/v1/requests/{request_id}/events")
    async def request_events(request_id: str, key: Key) -> StreamingResponse:
        """Server-sent events of the status changes (and progress), until the end; each
        open stream holds one of the key's places (429 past JOBCORD_API_MAX_WAITS_PER_KEY)."""
        await run_in_threadpool(gw.record_for, request_id, key)

        async def events() -> AsyncIterator[str]:
            async for data in gw.follower.events(request_id):
                yield sse(data, "status")

        release = gw.waits.acquire(key.key_id)
        return HeldStream(events(), release, media_type="text/event-stream")

    @router.get("/v1/requests/{request_id}/output")
    def request_output(request_id: str, key: Key) -> Response:
        """The stored output object (large JSON or bytes), whatever the result store."""
        record = gw.record_for(request_id, key)
        if record.result is None:
            raise HTTPException(404, f"request {request_id} has no stored output")
        data = gw.client.results.get_bytes(record.result.key)
        return Response(data, media_type=record.result.content_type)

    return router
