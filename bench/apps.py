"""The jobs both engines run in the benchmark: a no-op, and one that stamps its start."""

from __future__ import annotations

import os
import time
from functools import cache

import redis

from jobcord.producers import App

app = App("bench")


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"])


@app.job()
def noop() -> None:
    return None


@app.job()
def stamp(i: int, t0: float) -> None:
    started = time.time() - t0  # first thing: the enqueue-to-start latency
    _redis().set(f"bench:lat:{i}", started)


@app.job()
def hold(key: str, seconds: float) -> None:
    """Counts its starts, then works for a while (the redelivery benchmark kills its consumer)."""
    _redis().rpush(f"bench:starts:{key}", time.time())
    time.sleep(seconds)


@app.job()
def sleep_ms(ms: float) -> None:
    """A small unit of work (a 1-10 ms GPU call, say) for the drain benchmark."""
    time.sleep(ms / 1000)


@app.job(concurrency=8)
def sleep_ms_shared(ms: float) -> None:
    """The same, declared to run 8 at once per job process (as dramatiq's 8 threads do)."""
    time.sleep(ms / 1000)
