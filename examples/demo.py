"""The demo app: what `jobcord dev` runs. Each job shows one part of the lifecycle."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator

from jobcord import App, JobContext

app = App("demo")


@app.on_startup()
def model() -> dict[str, float]:
    # Stands in for loading weights: runs once per consumer process, kept for every job.
    time.sleep(0.2)
    return {"scale": 2.0, "loaded_at": time.time(), "pid": float(os.getpid())}


@app.job(timeout=30)
def add(a: int, b: int) -> int:
    return a + b


@app.job(timeout=60, retries=2, retry_initial_delay_s=0.2)
def scale(values: list[float], ctx: JobContext) -> list[float]:
    """Uses the model loaded once by on_startup and reports progress."""
    factor = ctx.state["model"]["scale"]
    out = []
    for i, v in enumerate(values):
        out.append(v * factor)
        ctx.progress((i + 1) / len(values), f"{i + 1}/{len(values)} scaled")
        time.sleep(0.05)
    return out


@app.job(timeout=60, upload=True)
def render(ctx: JobContext, text: str, copies: int = 1) -> dict[str, int]:
    """Writes files to its output directory; they are uploaded to the result store."""
    for i in range(copies):
        (ctx.output_dir / f"copy-{i}.txt").write_text(f"{text}\n" * (i + 1))
    return {"files": copies}


@app.job(timeout=1.5)
def stuck(seconds: float) -> str:
    """Stuck inside C code (libc sleep): only killing the process stops it."""
    ctypes.CDLL(None).sleep(int(seconds))
    return "unreachable when seconds > timeout"


@app.job(retries=2, retry_initial_delay_s=0.1)
def flaky(ctx: JobContext, fail_times: int) -> int:
    """Fails its first `fail_times` attempts, then succeeds (retries with backoff)."""
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"attempt {ctx.attempt} failed on purpose")
    return ctx.attempt


@app.job(timeout=120)
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.job(schedule="* * * * *", schedule_input={"seconds": 0.0})
def heartbeat(seconds: float) -> float:
    """Periodic: `jobcord scheduler examples.demo:app` submits it once a minute (UTC cron)."""
    time.sleep(seconds)
    return time.time()


@app.job()
def noise(size: int) -> bytes:
    """Bytes output always goes to the result store."""
    return os.urandom(size)


@app.cord(public_api_path="/predict", method="POST", timeout=30)
def predict(values: list[float], ctx: JobContext) -> dict[str, list[float]]:
    """Request/response through the queue: POST /apps/demo/predict {"values": [...]}."""
    factor = ctx.state["model"]["scale"]
    return {"scaled": [v * factor for v in values]}


@app.cord(public_api_path="/generate", method="POST", stream=True, timeout=60)
def generate(prompt: str, tokens: int = 5) -> Iterator[str]:
    """Streams one item at a time (server-sent events): POST /apps/demo/generate."""
    for i in range(tokens):
        time.sleep(0.05)
        yield f"{prompt}-{i}"
