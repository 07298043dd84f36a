"""Jobs that share a process (``concurrency``): overlap is counted in Redis as they run."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from jobcord.producers import App, JobContext

app = App("shared")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


def _enter(key: str) -> None:
    r = _redis()
    now = r.incr(f"jobcord:test:inside:{key}")
    r.set(f"jobcord:test:most:{key}", max(now, int(r.get(f"jobcord:test:most:{key}") or 0)))
    r.sadd(f"jobcord:test:pids:{key}", os.getpid())


def _leave(key: str) -> None:
    _redis().decr(f"jobcord:test:inside:{key}")


@app.job(concurrency=4)
def nap(key: str, seconds: float, ctx: JobContext) -> int:
    _enter(key)
    _redis().rpush(f"jobcord:test:started:{key}", ctx.request_id)
    time.sleep(seconds)
    _leave(key)
    return ctx.attempt


@app.job(concurrency=4)
async def anap(key: str, seconds: float) -> str:
    _enter(key)
    await asyncio.sleep(seconds)
    _leave(key)
    return "slept"


@app.job(concurrency=4, timeout=2.0)
def maybe_stuck(key: str, seconds: float, ctx: JobContext) -> int:
    """Sleeps ``seconds`` on its first attempt only."""
    _redis().rpush(f"jobcord:test:started:{key}", f"{ctx.request_id}:{ctx.attempt}")
    if ctx.attempt == 1:
        time.sleep(seconds)
    return ctx.attempt


@app.job()
def solo(key: str) -> str:
    _redis().set(f"jobcord:test:solo:{key}", os.getpid())
    return "alone"
