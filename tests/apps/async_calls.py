"""Jobs for the async client's tests: a short async job many requests run at once in one
process, and a job whose own input is named ``timeout``."""

from __future__ import annotations

import asyncio

from jobcord.producers import App

app = App("async_calls")


@app.job(concurrency=32)
async def pause(seconds: float, tag: int = 0) -> int:
    await asyncio.sleep(seconds)
    return tag


@app.job()
def named_timeout(timeout: float) -> float:
    """Its input is called ``timeout``: ``timeout=`` stays its input, not the wait's limit."""
    return timeout


@app.job()
def big(n: int) -> str:
    """An output over JOBCORD_INLINE_OUTPUT_MAX_BYTES goes to the result store."""
    return "x" * n


@app.job()
async def fan_out(n: int) -> int:
    """An async parent: its children's keys are derived in code order, on every attempt."""
    results = await asyncio.gather(*(pause.arun_remote(0.05, tag=i) for i in range(n)))
    return sum(results)
