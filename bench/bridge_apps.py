"""A team's dramatiq actors with a GPU step, two ways, for bench/bench_bridge.py:

- ``plain_ingest``: dramatiq alone, the GPU step inline in the actor, then ``stored``;
- ``bridged_ingest``: the GPU step a jobcord job, ``stored`` told by ``on_complete``.

Both count the GPU step's runs and time ``stored`` in Redis (``bench:bridge:*``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from jobcord.dramatiq import JobcordMiddleware
from jobcord.producers import App

REDIS_URL = os.environ.get("JOBCORD_REDIS_URL", "redis://127.0.0.1:6379/12")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11")
HEARTBEAT_MS = int(os.environ.get("BENCH_HEARTBEAT_MS", "60000"))  # dramatiq's default

app = App("benchbridge")
broker = RedisBroker(url=BROKER_URL, heartbeat_timeout=HEARTBEAT_MS)
broker.add_middleware(JobcordMiddleware())
dramatiq.set_broker(broker)


def _r() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def _gpu_step(key: str, hold_s: float) -> list[float]:
    _r().rpush(f"bench:bridge:runs:{key}", 1)
    time.sleep(hold_s)
    return [1.0, 2.0]


@app.job(timeout=120)
def embed(key: str, hold_s: float) -> list[float]:
    return _gpu_step(key, hold_s)


@dramatiq.actor(max_retries=3)
def plain_ingest(key: str, hold_s: float) -> None:
    stored.send(key, {"status": "SUCCEEDED", "output": _gpu_step(key, hold_s)})


@dramatiq.actor(max_retries=3)
def bridged_ingest(key: str, hold_s: float) -> None:
    embed.async_run_remote(key, hold_s, on_complete=stored.message(key))


@dramatiq.actor(max_retries=3)
def stored(key: str, request: dict[str, Any]) -> None:
    _r().rpush(f"bench:bridge:stored:{key}", repr(time.time()))
