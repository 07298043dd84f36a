"""Operations: /healthz (no auth), /metrics, /v1/queues."""

from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from storage.apikeys import ApiKey
from storage.keys import BROKER_NAMESPACE, DELAYED_KEY, RUNNING_KEY, record_key

from .context import Gateway

__all__ = ["ops_router"]


def queue_stats(gw: Gateway) -> list[dict[str, Any]]:
    r = gw.client.redis
    specs = {s.queue: s for s in gw.app.jobs.values()}
    running: Any = r.zrange(RUNNING_KEY, 0, -1)
    delayed: Any = r.zrange(DELAYED_KEY, 0, -1)
    pipe = r.pipeline(transaction=False)
    for rid in [*running, *delayed]:
        pipe.hget(record_key(rid), "queue")
    owners = pipe.execute()
    in_progress = owners[: len(running)]
    waiting_retry = owners[len(running) :]
    consumers = gw.consumers.live()
    out = []
    for queue, spec in sorted(specs.items()):
        out.append(
            {
                "queue": queue,
                "app": spec.app,
                "gpu_class": spec.gpu_class,
                "queued": sum(
                    int(r.llen(f"{BROKER_NAMESPACE}:{queue}{level}"))
                    for level in (".p0", "", ".p2")
                )
                + waiting_retry.count(queue),
                "in_progress": in_progress.count(queue),
                "consumers": [c for c in consumers if queue in c.get("queues", [])],
            }
        )
    return out


def ops_router(gw: Gateway) -> APIRouter:
    router = APIRouter(tags=["operations"])
    Key = Annotated[ApiKey, Depends(gw.auth)]  # noqa: N806

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            gw.client.redis.ping()
        except redis.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": str(exc)}, 503)
        return JSONResponse({"status": "ok"})

    @router.get("/metrics")
    def metrics(key: Key) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/queues")
    def queues(key: Key) -> dict[str, Any]:
        """Per GPU-class queue: waiting and running counts, and the live consumers serving it."""
        gw.check_app(gw.app.name, key)
        return {"queues": queue_stats(gw)}

    return router
