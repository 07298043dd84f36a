"""A jobcord app and the dramatiq actors of a team that calls it, for the bridge's tests.

The dramatiq broker comes from ``BRIDGE_BROKER_URL`` (a redis:// of the test's own, or
RabbitMQ's amqp://), its queue from ``BRIDGE_QUEUE`` (unique per test). Everything the
actors and the job do is counted in jobcord's Redis (``jobcord:test:bridge:*`` keys, removed
by the fixtures), so tests can prove "ran once".
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import dramatiq
import redis

from jobcord.dramatiq import JobcordMiddleware, actor
from jobcord.producers import App

QUEUE = os.environ.get("BRIDGE_QUEUE", "bridge")
URL = os.environ.get("BRIDGE_BROKER_URL", "redis://127.0.0.1:6379/9")
KEY = "jobcord:test:bridge"

app = App("bridge")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


def make_broker(url: str) -> dramatiq.Broker:
    """The team's broker, as its own workers run it (dead workers' messages come back after
    2 s here instead of dramatiq's 60, so the kill tests take seconds)."""
    if url.startswith("amqp"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url, heartbeat_timeout=2000, maintenance_chance=1_000_000)


broker = make_broker(URL)
broker.add_middleware(
    JobcordMiddleware(claim_lease_s=float(os.environ.get("BRIDGE_CLAIM_LEASE_S", "3")))
)
dramatiq.set_broker(broker)


@app.job(timeout=60, retries=0)
def embed(text: str, hold_s: float = 0.0) -> list[float]:
    """The GPU job: counts its runs, holds a while when asked (so a test can kill the
    dramatiq worker waiting on it)."""
    _redis().rpush(f"{KEY}:runs", text)
    time.sleep(hold_s)
    return [float(len(text)), 1.0]


RETRY = {"max_retries": 5, "min_backoff": 200, "max_backoff": 1000}


@dramatiq.actor(queue_name=QUEUE, **RETRY)
def start(text: str, hold_s: float = 0.0) -> None:
    """The team's CPU actor: calls the job, tells ``collect`` when it ends, and waits (a
    worker killed while it waits has this message redelivered)."""
    handle = embed.async_run_remote(text, hold_s, on_complete=collect.message(f"tag-{text}"))
    _redis().rpush(f"{KEY}:submitted", handle.request_id)
    handle.wait(timeout=60)


@dramatiq.actor(queue_name=QUEUE, **RETRY)
def collect(tag: str, request: dict[str, Any]) -> None:
    """The completion actor. ``{KEY}:collect_hold`` makes it hang (to be killed mid-way),
    ``{KEY}:collect_fail`` makes it raise that many times (to be retried)."""
    r = _redis()
    r.rpush(f"{KEY}:collect_started", request["request_id"])
    time.sleep(float(r.get(f"{KEY}:collect_hold") or 0))
    if int(r.decr(f"{KEY}:collect_fail")) >= 0:
        raise RuntimeError("collect fails on purpose")
    done = {"tag": tag, "id": request["request_id"], "status": request["status"]}
    r.rpush(f"{KEY}:completions", json.dumps({**done, "output": request["output"]}))


embed_actor = actor(embed, queue_name=QUEUE, **RETRY)


@dramatiq.actor(queue_name=QUEUE, **RETRY)
def sink(vector: list[float]) -> None:
    """The step after ``embed_actor`` in a pipeline."""
    _redis().rpush(f"{KEY}:sunk", json.dumps(vector))
