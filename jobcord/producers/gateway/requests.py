"""GET/DELETE /v1/requests/{id}, its events (SSE), its stored output and files."""

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse

from jobcord.storage.apikeys import ApiKey
from jobcord.storage.records import RequestRecord, ResultFile
from jobcord.storage.results import ResultStore
from jobcord.storage.statuses import Status

from ..client import CANCEL_WAIT_S, MAX_CANCEL_WAIT_S
from .context import Gateway
from .holds import HeldStream

__all__ = ["request_router", "sse", "served_here"]


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event: ``data`` (JSON-encoded unless text) split into ``data:`` lines
    at every line break, so that no value can end the event or forge another."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return head + "".join(f"data: {line}\n" for line in lines) + "\n"


#: Status event fields that are numbers in the record (Redis streams keep text).
_EVENT_NUMBERS = {"at": float, "attempt": int, "progress": float}


def typed_event(data: dict[str, str]) -> dict[str, Any]:
    """A status event as JSON types: ``at`` and ``progress`` floats, ``attempt`` an int."""
    out: dict[str, Any] = dict(data)
    for name, kind in _EVENT_NUMBERS.items():
        if name in out:  # never fail a stream over one odd field: it stays text
            with contextlib.suppress(ValueError):
                out[name] = kind(out[name])
    return out


def served_here(record: RequestRecord, store: ResultStore, base: str) -> RequestRecord:
    """Objects on the API's own disk get this API's download routes instead of file:// URLs."""

    def here(f: ResultFile | None, path: str) -> ResultFile | None:
        if f is None or store.local_path(f.key) is None:
            return f
        return f.model_copy(update={"url": f"{base}/v1/requests/{record.request_id}/{path}"})

    result = here(record.result, "output")
    files = [here(f, f"files/{quote(f.name)}") or f for f in record.files]
    return record.model_copy(update={"result": result, "files": files})


#: A stored object is a job's bytes, whatever content type it claims: a browser must never run
#: it as a page of this API's origin (where the dashboard's session cookie would let its
#: script act for the viewer).
_INERT = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def _download(store: ResultStore, f: ResultFile, *, attachment: bool) -> Response:
    path = store.local_path(f.key)
    name = f.name.rsplit("/", 1)[-1] if attachment else None
    if path is None:
        headers = dict(_INERT)
        if name is not None:
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
        return Response(store.get_bytes(f.key), media_type=f.content_type, headers=headers)
    if not path.is_file():
        raise HTTPException(404, f"stored object {f.name!r} is gone")
    return FileResponse(path, media_type=f.content_type, filename=name, headers=_INERT)


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
    def get_request(request_id: str, key: Key, request: Request) -> dict[str, Any]:
        """The request: status, times, attempts, output or result URLs, error. URLs are
        presigned on S3; with the local result store they are this API's own routes."""
        record = gw.record_for(request_id, key, urls=True)
        base = str(request.base_url).rstrip("/")
        return served_here(record, gw.client.results, base).public()

    @router.delete("/v1/requests/{request_id}")
    async def cancel_request(
        request_id: str,
        key: Key,
        wait: Annotated[
            float,
            Query(
                ge=0,
                le=MAX_CANCEL_WAIT_S,
                description="Seconds to wait for a running request's consumer to stop it",
            ),
        ] = CANCEL_WAIT_S,
    ) -> dict[str, Any]:
        """Cancel, and answer the status it led to: a queued request is CANCELED at once; a
        running one is stopped by its consumer, waited for up to ``wait`` seconds
        (``IN_PROGRESS`` while it is still stopping)."""
        record = await run_in_threadpool(gw.record_for, request_id, key)
        if record.is_terminal:
            raise HTTPException(409, f"request {request_id} already ended {record.status.value}")
        status = await run_in_threadpool(gw.client.cancel, request_id, 0)
        if status is Status.IN_PROGRESS and wait > 0:  # waited on the event loop, no thread
            status = await gw.follower.wait_terminal(request_id, wait) or Status.IN_PROGRESS
        return {"request_id": request_id, "status": status, "cancel_requested": True}

    @router.post("/v1/requests/{request_id}/webhook", status_code=202)
    def redeliver_webhook(request_id: str, key: Key) -> dict[str, Any]:
        """Deliver the completion webhook (or on_complete message) again, e.g. after the
        receiver was fixed; an on_complete actor runs its logic again too."""
        record = gw.record_for(request_id, key)
        if not record.webhook_endpoint and record.on_complete is None:
            raise HTTPException(409, f"request {request_id} has no webhook_endpoint or on_complete")
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
                yield sse(typed_event(data), "status")

        release = gw.waits.acquire(key.key_id)
        return HeldStream(events(), release, media_type="text/event-stream")

    @router.get("/v1/requests/{request_id}/output")
    def request_output(request_id: str, key: Key) -> Response:
        """The stored output object (large JSON or bytes), whatever the result store."""
        record = gw.record_for(request_id, key)
        if record.result is None:
            raise HTTPException(404, f"request {request_id} has no stored output")
        return _download(gw.client.results, record.result, attachment=False)

    @router.get("/v1/requests/{request_id}/files/{name:path}")
    def request_file(request_id: str, name: str, key: Key) -> Response:
        """A file the job wrote (``upload=True``), by the name the record lists; only names
        the record lists are served, so no path can reach anything else."""
        record = gw.record_for(request_id, key)
        for f in record.files:
            if f.name == name:
                return _download(gw.client.results, f, attachment=True)
        raise HTTPException(404, f"request {request_id} has no file {name!r}")

    return router
