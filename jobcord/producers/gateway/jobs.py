"""POST /v1/apps/{app}/jobs/{job}/async_run_remote and .../run_remote, one pair per job.

No ``from __future__ import annotations`` in route modules: FastAPI must see the local
``Annotated`` dependency aliases as objects, not strings it cannot resolve.
"""

import json
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from jobcord.scheduler.bounds import check_idempotency_key
from jobcord.scheduler.errors import UnknownJob
from jobcord.scheduler.jobspec import JobSpec
from jobcord.scheduler.payloads import MSGPACK_TYPE, is_binary, unpack
from jobcord.storage.apikeys import ApiKey
from jobcord.storage.requests import Submission

from ..options import RequestOptions, SubmitOptions
from .bodies import Accepted, job_body_model
from .context import Gateway

__all__ = ["job_router"]

#: run_remote's wait when the caller names none (never above JOBCORD_API_MAX_WAIT_S).
_DEFAULT_WAIT_S = 30.0
_MSGPACK_TYPES = (MSGPACK_TYPE, "application/x-msgpack")

log = structlog.get_logger("jobcord.api")

SUBMISSIONS = Counter(
    "jobcord_api_submissions_total",
    "Requests submitted over HTTP (created: new; existing: an idempotent repeat)",
    ["app", "job", "outcome"],
)


def _prepared(
    spec: JobSpec, body: Any, idempotency_key: str | None
) -> tuple[dict[str, Any], SubmitOptions]:
    check_idempotency_key(idempotency_key, "Idempotency-Key")  # "jobcord-..." are ours: 422
    options = {name: getattr(body, name) for name in RequestOptions.model_fields}
    opts = SubmitOptions(idempotency_key=idempotency_key, **options)
    data = body.input.model_dump(mode="python")
    if not is_binary(data):
        data = body.input.model_dump(mode="json")
    return spec.signature.parameters_of(data), opts


def _counted(spec: JobSpec, sub: Submission) -> Submission:
    outcome = "created" if sub.created else "existing"
    SUBMISSIONS.labels(spec.app, spec.name, outcome).inc()
    # The API's line of a request's story (JOBCORD_LOG_LEVEL=debug: one per submission).
    log.debug(
        "request accepted", request_id=sub.request_id, app=spec.app, job=spec.name, outcome=outcome
    )
    return sub


def _submit(gw: Gateway, spec: JobSpec, body: Any, idempotency_key: str | None) -> Submission:
    data, opts = _prepared(spec, body, idempotency_key)
    return _counted(spec, gw.client.submit(spec, data, opts))


async def _submit_async(
    gw: Gateway, spec: JobSpec, key: ApiKey, body: Any, idempotency_key: str | None
) -> Submission:
    """From the event loop when the submission needs nothing but its one script (most do);
    on a worker thread otherwise (a rate to spend, a webhook to check, a binary input)."""
    if gw.rate_of(key) <= 0:
        data, opts = _prepared(spec, body, idempotency_key)
        sub = await gw.submit_nowait(spec, data, opts)
        if sub is not None:
            return _counted(spec, sub)
    return await run_in_threadpool(_admitted_submit, gw, spec, key, body, idempotency_key)


def _admitted_submit(
    gw: Gateway, spec: JobSpec, key: ApiKey, body: Any, idempotency_key: str | None
) -> Submission:
    gw.admit(spec.app, key)
    return _submit(gw, spec, body, idempotency_key)


def _parsed(model: type[BaseModel], body: Any, content_type: str) -> Any:
    """A body FastAPI did not parse as JSON (bytes) -> the route's body model, with FastAPI's
    422 on errors: msgpack when it says so; otherwise (no content type, a form's as ``curl -d``
    sends, text) JSON, which is what such a caller meant."""
    if not isinstance(body, bytes):
        return body
    if content_type.split(";")[0].strip().lower() in _MSGPACK_TYPES:
        try:
            data = unpack(body)
        except Exception as exc:  # noqa: BLE001 - any malformed msgpack is the caller's error
            raise RequestValidationError(
                [{"type": "msgpack_invalid", "loc": ("body",), "msg": f"invalid msgpack: {exc}"}]
            ) from None
    else:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            msg = (
                f"invalid JSON ({exc}); send Content-Type: application/json, or "
                f"{MSGPACK_TYPE} for binary inputs"
            )
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": msg}]
            ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _add_job_routes(router: APIRouter, gw: Gateway, spec: JobSpec) -> None:
    Body = job_body_model(spec)  # noqa: N806 - a class
    base = f"/v1/apps/{spec.app}/jobs/{spec.name}"
    IdemHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)]  # noqa: N806
    Key = Annotated[ApiKey, Depends(gw.auth)]  # noqa: N806

    # JSON, or msgpack (Content-Type: application/msgpack) for bytes and numpy arrays: FastAPI
    # hands a non-JSON body over as bytes, which we unpack and validate the same way.
    Payload = Body | bytes  # noqa: N806

    async def async_run_remote(
        request: Request,
        body: Payload,  # type: ignore[valid-type]
        key: Key,
        idempotency_key: IdemHeader = None,
    ) -> JSONResponse:
        gw.check_app(spec.app, key)
        parsed = _parsed(Body, body, request.headers.get("content-type", ""))
        sub = await _submit_async(gw, spec, key, parsed, idempotency_key)
        if sub.created:
            status = "QUEUED"
        else:
            status = (await run_in_threadpool(gw.client.get, sub.request_id)).status.value
        reply = {"request_id": sub.request_id, "status": status, "created": sub.created}
        return JSONResponse(reply, status_code=202)

    max_wait_s = gw.settings.api_max_wait_s
    default_wait_s = min(_DEFAULT_WAIT_S, max_wait_s)

    async def run_remote(
        request: Request,
        body: Payload,  # type: ignore[valid-type]
        key: Key,
        idempotency_key: IdemHeader = None,
        wait_seconds: Annotated[
            float | None,
            Query(
                ge=0,
                le=max_wait_s,
                allow_inf_nan=False,
                description=f"How long to wait (default {default_wait_s:g} s)",
            ),
        ] = None,
    ) -> JSONResponse:
        wait_s = default_wait_s if wait_seconds is None else wait_seconds
        gw.check_app(spec.app, key)
        parsed = _parsed(Body, body, request.headers.get("content-type", ""))
        # The place to wait is taken before anything is queued: refused (429), nothing runs.
        release = gw.waits.acquire(key.key_id) if wait_s > 0 else None
        try:
            sub = await _submit_async(gw, spec, key, parsed, idempotency_key)
            ended = await gw.follower.wait_terminal(sub.request_id, wait_s, final_check=False)
        finally:
            if release is not None:
                release()
        record = await gw.record_nowait(sub.request_id)
        if ended is None or not record.is_terminal:  # still running (or run again since)
            return JSONResponse({"request_id": sub.request_id, "status": record.status}, 202)
        return JSONResponse(record.public(), 200)

    for name, fn, code in (
        ("async_run_remote", async_run_remote, 202),
        ("run_remote", run_remote, 200),
    ):
        router.add_api_route(
            f"{base}/{name}",
            fn,
            methods=["POST"],
            status_code=code,
            response_model=Accepted if code == 202 else None,
            name=f"{spec.name}.{name}",
            summary=f"{name} {spec.app}.{spec.name}",
            tags=[f"jobs: {spec.app}"],
        )


def job_router(gw: Gateway) -> APIRouter:
    router = APIRouter()
    for spec in gw.app.jobs.values():
        if spec.kind == "job":
            _add_job_routes(router, gw, spec)

    @router.post("/v1/apps/{app}/jobs/{job}/{call}", include_in_schema=False)
    def unknown_job(
        app: str, job: str, call: str, key: Annotated[ApiKey, Depends(gw.auth)]
    ) -> None:
        gw.check_app(app, key)
        if call not in ("async_run_remote", "run_remote"):
            raise HTTPException(404, f"no such call {call!r}: use async_run_remote or run_remote")
        raise HTTPException(404, str(UnknownJob(app, job, gw.app.jobs)))

    return router
