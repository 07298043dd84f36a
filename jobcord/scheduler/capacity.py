"""Capacity signals per GPU-class queue, for operators and their autoscalers.

For each queue: requests waiting (runnable now) and delayed (a retry's backoff, a
``delay_seconds``), the age of the oldest runnable one, requests in progress, the live
consumers and their slots, and ``desired_consumers``: ceil((waiting + in progress) /
concurrency target), the figure hosted autoscalers compute from a per-replica concurrency
target (Baseten, Knative). The target is ``JOBCORD_AUTOSCALE_CONCURRENCY_TARGET`` requests per
consumer. Ages are on Redis's clock, as the messages' enqueue times are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from jobcord.storage.clock import redis_now
from jobcord.storage.keys import (
    delayed_key,
    enqueued_at,
    parked_index_key,
    parked_key,
    queue_key,
    record_key,
    running_key,
)

from .jobspec import JobSpec

__all__ = ["QueueCapacity", "queue_capacity", "PRIORITIES"]

#: The lists one queue's messages wait on, one per priority level (0, 1, 2).
PRIORITIES = (0, 1, 2)


@dataclass
class QueueCapacity:
    queue: str
    app: str
    gpu_class: str
    queued: int  # waiting + delayed
    waiting: int
    delayed: int
    oldest_waiting_s: float
    in_progress: int
    slots: int
    desired_consumers: int
    consumers: list[dict[str, Any]] = field(default_factory=list)
    #: Per job of the queue: the version this API submits, the versions the live consumers
    #: run (with their count), and requests set aside for each version no consumer here
    #: took yet (a rolling deploy in progress, or a version nobody runs any more).
    versions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_capacity(
    client: redis.Redis,
    specs: list[JobSpec],
    consumers: list[dict[str, Any]],
    *,
    concurrency_target: float,
    now: float | None = None,
) -> list[QueueCapacity]:
    """Each queue's figures; ``now``: Redis's clock (read here when not given)."""
    queues = {s.queue: s for s in specs}
    owners = _owner_queues(client)
    now = redis_now(client) if now is None else now
    out = []
    for queue, spec in sorted(queues.items()):
        waiting, oldest = _waiting(client, queue, now)
        parked = _parked(client, queue)
        waiting += sum(parked.values())
        in_progress = owners["running"].count(queue)
        serving = [c for c in consumers if queue in c.get("queues", [])]
        out.append(
            QueueCapacity(
                queue=queue,
                app=spec.app,
                gpu_class=spec.gpu_class,
                queued=waiting + owners["delayed"].count(queue),
                waiting=waiting,
                delayed=owners["delayed"].count(queue),
                oldest_waiting_s=oldest,
                in_progress=in_progress,
                slots=sum(int(c.get("slots", 0)) for c in serving),
                desired_consumers=math.ceil((waiting + in_progress) / concurrency_target),
                consumers=serving,
                versions=_versions([s for s in specs if s.queue == queue], serving, parked),
            )
        )
    return out


def _parked(client: redis.Redis, queue: str) -> dict[str, int]:
    """``job@version`` -> messages set aside on the queue for consumers of that version."""
    members: Any = client.smembers(parked_index_key(queue))
    pipe = client.pipeline(transaction=False)
    for member in sorted(members):
        pipe.llen(parked_key(queue, member))
    return {m: int(n) for m, n in zip(sorted(members), pipe.execute(), strict=True) if n}


def _versions(
    specs: list[JobSpec], serving: list[dict[str, Any]], parked: dict[str, int]
) -> list[dict[str, Any]]:
    out = []
    for spec in sorted(specs, key=lambda s: s.name):
        running: dict[str, int] = {}
        for consumer in serving:
            version = consumer.get("versions", {}).get(spec.name)
            if version is not None:
                running[version] = running.get(version, 0) + 1
        waiting = {
            member.rpartition("@")[2]: n
            for member, n in parked.items()
            if member.rpartition("@")[0] == spec.name
        }
        out.append(
            {
                "job": spec.name,
                "submitted_version": spec.job_version,
                "consumer_versions": running,
                "waiting_for_version": waiting,
            }
        )
    return out


def _owner_queues(client: redis.Redis) -> dict[str, list[str]]:
    """The queue of every running and every delayed request."""
    running: Any = client.zrange(running_key(), 0, -1)
    delayed: Any = client.zrange(delayed_key(), 0, -1)
    pipe = client.pipeline(transaction=False)
    for rid in [*running, *delayed]:
        pipe.hget(record_key(rid), "queue")
    found = pipe.execute()
    return {"running": found[: len(running)], "delayed": found[len(running) :]}


def _waiting(client: redis.Redis, queue: str, now: float) -> tuple[int, float]:
    """Messages waiting on the queue's priority lists, and the age of the oldest head."""
    pipe = client.pipeline(transaction=False)
    for priority in PRIORITIES:
        pipe.llen(queue_key(queue, priority))
        pipe.lindex(queue_key(queue, priority), 0)
    replies = pipe.execute()
    count = sum(int(n) for n in replies[0::2])
    oldest = 0.0
    for head in replies[1::2]:
        enqueued = enqueued_at(head) if head else None
        if enqueued is not None:
            oldest = max(oldest, now - enqueued)
    return count, round(oldest, 3)


def app_replicas(app: str, consumers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An autoscaled app's replicas over every host (from the consumers' registrations):
    desired, running, starting and retiring, and the latest scaling decision; under
    ``jobs`` the same for each job that scales on its own. None when no autoscaling
    consumer serves the app."""
    views = [
        c["replicas"] for c in consumers if c.get("app") == app and c.get("replicas") is not None
    ]
    if not views:
        return None
    out = _over_hosts([v for v in views if "desired" in v]) or {}
    jobs = sorted({job for v in views for job in v.get("jobs", {})})
    out["jobs"] = {
        job: _over_hosts([v["jobs"][job] for v in views if job in v.get("jobs", {})])
        for job in jobs
    }
    return {"app": app, **out}


def _over_hosts(views: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not views:
        return None
    latest = max(views, key=lambda v: v.get("at", 0))
    return {
        "desired": latest.get("desired", 0),
        "running": sum(int(v.get("running_here", 0)) for v in views),
        "starting": sum(int(v.get("starting_here", 0)) for v in views),
        "retiring": sum(int(v.get("retiring_here", 0)) for v in views),
        "min": latest.get("min"),
        "max": latest.get("max"),
        "hosts": len(views),
        "decision": latest.get("decision", ""),
        "decided_at": latest.get("at"),
    }
