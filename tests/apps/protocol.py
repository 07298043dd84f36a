"""A service-free app for the parent/child protocol tests (no Redis, no startup I/O)."""

from __future__ import annotations

import os
import time

from jobcord.producers import App, JobContext

app = App("protocol")


@app.job()
def echo(text: str, delay_s: float = 0.0) -> dict[str, object]:
    time.sleep(delay_s)
    return {"text": text, "pid": os.getpid()}


@app.job()
def chatty(ctx: JobContext, text: str) -> str:
    ctx.progress(0.5, "half")
    return text
