"""Operations: /healthz (no auth), /metrics, /v1/queues (capacity signals per GPU class)."""

from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from scheduler.capacity import QueueCapacity, queue_capacity
from storage.apikeys import ApiKey

from .context import Gateway

__all__ = ["ops_router"]

_LABELS = ("queue", "app", "gpu_class")
_GAUGES = {
    "waiting": Gauge("jobcord_queue_waiting", "Requests runnable now, not started", _LABELS),
    "delayed": Gauge("jobcord_queue_delayed", "Requests waiting for a retry or delay", _LABELS),
    "oldest_waiting_s": Gauge(
        "jobcord_queue_oldest_waiting_seconds", "Age of the oldest runnable request", _LABELS
    ),
    "in_progress": Gauge("jobcord_queue_in_progress", "Requests running", _LABELS),
    "slots": Gauge("jobcord_queue_consumer_slots", "Live consumer slots serving it", _LABELS),
    "desired_consumers": Gauge(
        "jobcord_queue_desired_consumers",
        "ceil((waiting + in progress) / JOBCORD_AUTOSCALE_CONCURRENCY_TARGET)",
        _LABELS,
    ),
}


def queue_stats(gw: Gateway) -> list[QueueCapacity]:
    return queue_capacity(
        gw.client.redis,
        list(gw.app.jobs.values()),
        gw.consumers.live(),
        concurrency_target=gw.settings.autoscale_concurrency_target,
    )


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
        for q in queue_stats(gw):  # capacity gauges are read from Redis at scrape time
            for name, gauge in _GAUGES.items():
                gauge.labels(q.queue, q.app, q.gpu_class).set(getattr(q, name))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/queues")
    def queues(key: Key) -> dict[str, Any]:
        """Per GPU-class queue: waiting, delayed, oldest wait, running, consumers and slots,
        and the desired consumer count for an autoscaler."""
        gw.check_app(gw.app.name, key)
        return {"queues": [q.as_dict() for q in queue_stats(gw)]}

    return router
