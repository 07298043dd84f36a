"""Batched jobs: written over lists, called with one item each."""

from __future__ import annotations

import os
import time

import redis
from pydantic import BaseModel

from jobcord.producers import App, JobContext

app = App("batched")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


@app.job(max_batch_size=8, batch_wait_ms=300)
def double(xs: list[int], ctx: JobContext) -> list[int]:
    """13 is refused alone (an exception returned in its place); every call is counted."""
    _redis().rpush("jobcord:test:calls:double", len(xs))
    out: list = [ValueError(f"{x} is unlucky") if x == 13 else 2 * x for x in xs]
    return out


class Item(BaseModel):
    text: str


@app.job(max_batch_size=16, batch_wait_ms=50)
def lengths(items: list[Item]) -> list[int]:
    return [len(item.text) for item in items]


@app.job(max_batch_size=4, batch_wait_ms=300, timeout=1.0)
def nap(seconds: list[float]) -> list[float]:
    time.sleep(max(seconds))
    return seconds


@app.job(max_batch_size=4, batch_wait_ms=300, retries=1, retry_initial_delay_s=0.05)
def flaky(keys: list[str]) -> list[str]:
    """The whole call raises on its first run of each key: each request retries on its own."""
    r = _redis()
    runs = [r.incr(f"jobcord:test:runs:{k}") for k in keys]  # every key counted
    if 1 in runs:
        raise RuntimeError("the model fell over")
    return keys


@app.cord(public_api_path="/lengths", max_batch_size=8, batch_wait_ms=50)
def lengths_cord(texts: list[str]) -> list[int]:
    return [len(t) for t in texts]
