"""POST /v1/apps/{app}/jobs/{job}/async_run_remote and .../run_remote, one pair per job.

No ``from __future__ import annotations`` in route modules: FastAPI must see the local
``Annotated`` dependency aliases as objects, not strings it cannot resolve.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from scheduler.jobspec import JobSpec
from scheduler.payloads import is_binary, unpack
from storage.apikeys import ApiKey
from storage.requests import Submission

from ..client import SubmitOptions, delay_until
from .bodies import Accepted, job_body_model
from .context import Gateway

__all__ = ["job_router"]


SUBMISSIONS = Counter(
    "jobcord_api_submissions_total",
    "Requests submitted over HTTP (created: new; existing: an idempotent repeat)",
    ["app", "job", "outcome"],
)


def _submit(gw: Gateway, spec: JobSpec, body: Any, idempotency_key: str | None) -> Submission:
    opts = SubmitOptions(
        idempotency_key=idempotency_key,
        webhook_endpoint=body.webhook_endpoint,
        priority=body.priority,
        max_time_in_queue_seconds=body.max_time_in_queue_seconds,
        timeout_seconds=body.timeout_seconds,
        delay_seconds=(
            body.delay_seconds if body.eta is None else delay_until(body.eta, body.delay_seconds)
        ),
        metadata=body.metadata,
        retries=body.retries,
    )
    data = body.input.model_dump(mode="python")
    if not is_binary(data):
        data = body.input.model_dump(mode="json")
    sub = gw.client.submit(spec, data, opts)
    SUBMISSIONS.labels(spec.app, spec.name, "created" if sub.created else "existing").inc()
    return sub


def _parsed(model: type[BaseModel], body: Any) -> Any:
    """A msgpack body (bytes) -> the route's body model, with FastAPI's 422 on errors."""
    if not isinstance(body, bytes):
        return body
    try:
        data = unpack(body)
    except Exception as exc:  # noqa: BLE001 - any malformed msgpack is the caller's error
        raise RequestValidationError(
            [{"type": "msgpack_invalid", "loc": ("body",), "msg": f"invalid msgpack: {exc}"}]
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

    def async_run_remote(
        body: Payload,  # type: ignore[valid-type]
        key: Key,
        idempotency_key: IdemHeader = None,
    ) -> JSONResponse:
        gw.admit(spec.app, key)
        sub = _submit(gw, spec, _parsed(Body, body), idempotency_key)
        status = "QUEUED" if sub.created else gw.client.get(sub.request_id).status.value
        reply = {"request_id": sub.request_id, "status": status, "created": sub.created}
        return JSONResponse(reply, status_code=202)

    async def run_remote(
        body: Payload,  # type: ignore[valid-type]
        key: Key,
        idempotency_key: IdemHeader = None,
        wait_seconds: Annotated[
            float, Query(ge=0, le=gw.settings.api_max_wait_s, description="How long to wait")
        ] = 30.0,
    ) -> JSONResponse:
        gw.admit(spec.app, key)
        sub = await run_in_threadpool(_submit, gw, spec, _parsed(Body, body), idempotency_key)
        status = await gw.follower.wait_terminal(sub.request_id, wait_seconds)
        record = await run_in_threadpool(gw.client.get, sub.request_id)
        if status is None:  # still running: the caller polls GET /v1/requests/{id}
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
        raise HTTPException(404, f"app {app!r} has no job {job!r}")

    return router
