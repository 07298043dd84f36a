"""Operations: /healthz (no auth), /metrics, /v1/queues (capacity signals per GPU class)."""

import hmac
from collections.abc import Iterator
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from jobcord.scheduler.capacity import QueueCapacity, app_replicas, queue_capacity
from jobcord.scheduler.health import assess
from jobcord.storage.apikeys import ApiKey
from jobcord.storage.clock import redis_now
from jobcord.storage.health import ProcessHealthStore
from jobcord.storage.registry import with_heartbeat_ages

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


_REPLICAS = Gauge(
    "jobcord_app_replicas",
    "An autoscaled app's replicas on every host: desired, running, starting",
    ["app", "state"],
)


def queue_stats(
    gw: Gateway, consumers: list[dict[str, Any]], now: float | None = None
) -> list[QueueCapacity]:
    """The app's queues (``consumers``: the live registrations, read once by the caller;
    ``now``: Redis's clock, read here when not given)."""
    return queue_capacity(
        gw.client.redis,
        list(gw.app.jobs.values()),
        consumers,
        concurrency_target=gw.settings.autoscale_concurrency_target,
        now=now,
    )


def metrics_token_ok(gw: Gateway, request: Request) -> bool:
    """Whether the request carries the metrics-only token (JOBCORD_METRICS_TOKEN, when set)."""
    token = gw.settings.metrics_token
    if not token:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class _OnlyApp:
    """The registry's metrics without the samples labelled with another app."""

    def __init__(self, registry: CollectorRegistry, app: str) -> None:
        self.registry = registry
        self.app = app

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            samples = [s for s in metric.samples if s.labels.get("app", self.app) == self.app]
            if samples or not metric.samples:
                metric.samples = samples
                yield metric


def ops_router(gw: Gateway) -> APIRouter:
    router = APIRouter(tags=["operations"])
    Key = Annotated[ApiKey, Depends(gw.auth)]  # noqa: N806

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        """200 while Redis answers: ``ok``, or ``degraded`` with the stale loops of live
        scheduler and consumer processes (``jobcord.scheduler.health``, on Redis's clock); 503
        without Redis."""
        try:
            gw.client.redis.ping()
            store = ProcessHealthStore(gw.client.redis)
            reports = store.reports()
            now = store.now()
            webhooks = store.webhook_backlog(now)
        except redis.RedisError as exc:
            return JSONResponse({"status": "unavailable", "redis": str(exc)}, 503)
        stale_after_s = gw.settings.loop_stale_after_s
        report = assess(reports, stale_after_s=stale_after_s, now=now, webhooks=webhooks)
        return JSONResponse(report.as_dict())

    @router.get("/metrics")
    def metrics(request: Request) -> Response:
        """Prometheus figures of this API's app only: for its scraper's token
        (JOBCORD_METRICS_TOKEN) or an API key allowed the app; any other key gets 404."""
        if not metrics_token_ok(gw, request):
            gw.check_app(gw.app.name, gw.auth.verify(request))
        consumers = gw.consumers.live()
        for q in queue_stats(gw, consumers):  # capacity gauges are read at scrape time
            for name, gauge in _GAUGES.items():
                gauge.labels(q.queue, q.app, q.gpu_class).set(getattr(q, name))
        replicas = app_replicas(gw.app.name, consumers)
        if replicas is not None:
            groups = [(gw.app.name, replicas)] if "desired" in replicas else []
            groups += [(f"{gw.app.name}/{job}", v) for job, v in replicas["jobs"].items()]
            for name, view in groups:
                for state in ("desired", "running", "starting"):
                    _REPLICAS.labels(name, state).set(view[state])
        only = _OnlyApp(REGISTRY, gw.app.name)
        return Response(generate_latest(only), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/queues")
    def queues(key: Key) -> dict[str, Any]:
        """Per GPU-class queue: waiting, delayed, oldest wait, running, consumers (each
        with its heartbeat's age on Redis's clock, and whether it is stale) and slots, and
        the desired consumer count for an autoscaler; with autoscaling workers, the app's
        replicas (desired, running, starting) and the last scaling decision."""
        gw.check_app(gw.app.name, key)
        now = redis_now(gw.client.redis)
        consumers = with_heartbeat_ages(gw.consumers.live(), now, gw.settings.lease_ttl_s / 3)
        return {
            "queues": [q.as_dict() for q in queue_stats(gw, consumers, now)],
            "replicas": app_replicas(gw.app.name, consumers),
        }

    return router
