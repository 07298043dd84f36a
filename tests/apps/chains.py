"""Jobs that call jobs: fan-out, an error three levels deep, a retried parent, cancels."""

from __future__ import annotations

import asyncio
import os
import time

import redis

from jobcord.producers import App, JobContext

app = App("chains")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


@app.job()
def leaf(x: int) -> int:
    return x * 2


@app.job()
def fan_out(n: int) -> int:
    """A sync parent: submits n children, then waits for each."""
    handles = [leaf.async_run_remote(i) for i in range(n)]
    return sum(h.result(timeout=60) for h in handles)


@app.job()
async def afan_out(n: int) -> int:
    """An async parent: waits on n children concurrently."""
    results = await asyncio.gather(*(leaf.arun_remote(i) for i in range(n)))
    return sum(results)


class StepFailed(Exception):
    """Importable by callers: a child's failure comes back as this class."""


@app.job()
def bottom(reason: str) -> None:
    raise StepFailed(f"root cause: {reason}")


@app.job()
def middle(reason: str) -> None:
    bottom.run_remote(reason)


@app.job()
def top(reason: str) -> None:
    middle.run_remote(reason)


@app.job()
def counted(key: str, i: int) -> int:
    _redis().incr(f"jobcord:test:count:{key}:{i}")
    return i


@app.job(retries=1, retry_initial_delay_s=0.05, retry_max_delay_s=0.1)
def flaky_parent(key: str, ctx: JobContext) -> list[int]:
    """Makes three children, then fails its first attempt: the retry reuses them."""
    out = [counted.run_remote(key, i) for i in range(3)]
    if ctx.attempt == 1:
        raise RuntimeError("the parent fails after its children finished")
    return out


@app.job()
def sleeper(key: str, seconds: float) -> float:
    _redis().set(f"jobcord:test:started:{key}", "1")
    time.sleep(seconds)
    return seconds


@app.job()
def waiter(key: str, seconds: float) -> float:
    """A parent with two long children: canceling it cancels them."""
    handles = [sleeper.async_run_remote(f"{key}-{i}", seconds) for i in range(2)]
    return sum(h.result() for h in handles)


@app.job(timeout=2)
def impatient(key: str) -> float:
    """Times out while its child still sleeps: the child is canceled with it."""
    return sleeper.run_remote(key, 30.0)


@app.job()
def picky_child(key: str) -> int:
    n = int(_redis().incr(f"jobcord:test:count:{key}"))
    if n < 3:
        raise ConnectionError(f"attempt {n} fails")
    return n


@app.job()
def retries_per_call(key: str) -> int:
    """The child job has no retries of its own; this call gives it two."""
    return picky_child.run_remote(key, retries=2)
