"""Jobs for the multi-Redis tests: each execution is noted in a file (outside Redis, whose
primary the tests kill), so "ran once" survives a failover that loses writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from jobcord.producers import App, JobContext

app = App("topology")


def _note(key: str, ctx: JobContext) -> None:
    marks = os.environ.get("JOBCORD_TEST_MARKS")
    if marks:
        with open(Path(marks) / "runs.log", "a") as f:  # O_APPEND: one line a run
            f.write(f"{key} {ctx.request_id} {ctx.attempt}\n")


@app.job()
def mark(key: str, ctx: JobContext, sleep_s: float = 0.0) -> str:
    _note(key, ctx)
    time.sleep(sleep_s)
    return key


@app.job(retries=1, retry_initial_delay_s=0.2, retry_max_delay_s=0.2)
def flaky(key: str, ctx: JobContext) -> str:
    """Fails its first attempt: the retry path (delayed set, promotion) on each topology."""
    _note(key, ctx)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails on purpose")
    return key


def executions(marks: Path) -> list[tuple[str, str, int]]:
    """Every execution noted so far, in order: (key, request id, attempt)."""
    try:
        lines = (marks / "runs.log").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(k, r, int(a)) for k, r, a in (line.split() for line in lines if line.strip())]


def runs(marks: Path) -> list[str]:
    """The key of every execution noted so far, in order."""
    return [key for key, _, _ in executions(marks)]


# -- for the tests (not the jobs): a caller of this app during a failover -------------------
def client(**settings: object):  # type: ignore[no-untyped-def]
    """A RedisClient with these settings, as the default for this process's jobs."""
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings

    c = RedisClient(load_settings(**settings))
    set_default_client(c)
    return c


def submit_retrying(key: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    """What a caller does during a failover: retry the same idempotency key until Redis takes
    it (and acknowledges it, where asked): the key makes retrying safe."""
    import redis

    from jobcord.storage.errors import NotAcknowledged

    deadline = time.monotonic() + timeout
    while True:
        try:
            return mark.async_run_remote(key, idempotency_key=key)
        except (redis.ConnectionError, redis.TimeoutError, NotAcknowledged):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
