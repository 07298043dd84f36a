"""What each part of the dashboard shows, read from Redis: plain dicts for the templates.

Every reader is bounded (a page of requests, the newest failures, a few levels of children)
so that a dashboard left open on a big deployment costs Redis a few commands a second.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from jobcord.scheduler.capacity import app_replicas
from jobcord.storage.clock import redis_now
from jobcord.storage.records import RequestRecord
from jobcord.storage.registry import with_heartbeat_ages

from ..context import Gateway
from ..ops import queue_stats
from .filters import RequestFilter

__all__ = [
    "queues_view",
    "consumers_view",
    "requests_view",
    "failures_view",
    "request_view",
    "apps_view",
]

#: Failed requests read for the failures view (newest first).
FAILURES_READ = 500
#: Characters of a request's input shown on its page.
INPUT_PREVIEW_CHARS = 2_000


def apps_view(gw: Gateway, allowed: Any) -> list[str]:
    """Apps with requests in Redis that the key may see, this API's own first."""
    names = [a for a in gw.client.store.apps() if allowed(a) and a != gw.app.name]
    return [gw.app.name, *names]


def queues_view(gw: Gateway, consumers: list[dict[str, Any]]) -> dict[str, Any]:
    """The queue table, and the app's replicas when autoscaling workers serve it
    (``consumers``: the live registrations, read once a render)."""
    return {
        "queues": [q.as_dict() for q in queue_stats(gw, consumers)],
        "replicas": app_replicas(gw.app.name, consumers),
    }


def consumers_view(gw: Gateway, consumers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Live consumers by app and host; each heartbeat's age is on Redis's clock, and one that
    missed two and a half heartbeats is stale (``jobcord.storage.registry.with_heartbeat_ages``)."""
    now = redis_now(gw.client.redis)
    out = with_heartbeat_ages(consumers, now, gw.settings.lease_ttl_s / 3)
    return sorted(out, key=lambda c: (c.get("app", ""), c.get("host", ""), c.get("worker", "")))


def requests_view(gw: Gateway, f: RequestFilter) -> list[RequestRecord]:
    return gw.client.store.recent(
        f.app,
        limit=f.limit,
        statuses=set(f.statuses) or None,
        job=f.job,
        since=f.since_epoch,
    )


def failures_view(gw: Gateway, app: str) -> dict[str, Any]:
    """The dead letters of ``app``, grouped by error type (largest group first)."""
    failed = gw.client.store.failed(app, limit=FAILURES_READ)
    groups: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in failed:
        groups[r.error.type if r.error else "unknown"].append(r)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return {"total": len(failed), "groups": ordered, "capped": len(failed) >= FAILURES_READ}


def request_view(gw: Gateway, record: RequestRecord) -> dict[str, Any]:
    """A request's page: the record (as the status route gives it: children, download
    links, why it waits), its event timeline and a preview of its input."""
    events = [
        {"status": e.status.value, "at": e.at, "attempt": e.attempt, "fields": e.fields}
        for e in gw.client.store.events(record.request_id)
    ]
    return {
        "r": record,
        "events": events,
        "input_preview": _preview(record),
        "served_here": record.app == gw.app.name,
    }


def _preview(record: RequestRecord) -> str:
    if record.input is None:
        return f"(stored apart: {record.input_ref})" if record.input_ref else ""
    if record.input_format != "json":
        return f"({record.input_format} input, not shown)"
    text = json.dumps(record.input, indent=2, ensure_ascii=False)
    if len(text) > INPUT_PREVIEW_CHARS:
        return text[:INPUT_PREVIEW_CHARS] + f"\n… ({len(text):,} characters in all)"
    return text
