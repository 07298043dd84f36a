"""The app the integration tests run: each job exercises one lifecycle path.

Jobs count their executions in Redis (``jobcord:test:*`` keys, removed by the fixtures) so
tests can prove "ran exactly once" or "never ran".
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections.abc import Iterator

import redis
from pydantic import BaseModel

from jobcord.producers import App, JobContext, NodeSelector, PermanentError, RetryableError

app = App("lifecycle")


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


def _count(key: str) -> int:
    return int(_redis().incr(f"jobcord:test:count:{key}"))


@app.on_startup()
def boot() -> dict[str, int]:
    _redis().incr("jobcord:test:startups")
    return {"pid": os.getpid()}


class Point(BaseModel):
    x: int
    y: int


@app.job()
def echo(x: int, ctx: JobContext, tag: str = "") -> dict[str, object]:
    return {"x": x, "tag": tag, "pid": os.getpid(), "startup_pid": ctx.state["boot"]["pid"]}


class Box(BaseModel):
    w: int
    h: int = 1


@app.job()
def area(box: Box) -> int:
    """One model parameter: its fields are the input, everywhere."""
    return box.w * box.h


@app.job()
def typed(p: Point, scale: int = 1) -> Point:
    return Point(x=p.x * scale, y=p.y * scale)


@app.job()
def count(key: str, sleep_s: float = 0.0) -> int:
    n = _count(key)
    time.sleep(sleep_s)
    return n


@app.job()
def report_pid(key: str, sleep_s: float) -> int:
    """Publishes the pid of the process running it, then sleeps (tests kill that process)."""
    n = _count(key)
    _redis().set(f"jobcord:test:pid:{key}:{n}", os.getpid())
    time.sleep(sleep_s)
    return n


@app.job(timeout=1.0)
def stuck_in_c(key: str, seconds: int) -> str:
    _count(key)
    ctypes.CDLL(None).sleep(seconds)  # releases the GIL but never returns to Python
    return "finished"


@app.job()
def hold_gil(key: str, seconds: int) -> int:
    """Holds the GIL for `seconds` (PyDLL does not release it): heartbeats in this process stop."""
    n = _count(key)
    ctypes.PyDLL(None).sleep(seconds)
    return n


@app.job(retries=2, retry_initial_delay_s=0.05, retry_max_delay_s=0.1)
def flaky(ctx: JobContext, key: str, fail_times: int) -> int:
    _count(key)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


@app.job(retries=1, retry_initial_delay_s=3.0, retry_max_delay_s=3.0)
def fails_then_waits(key: str) -> None:
    _count(key)
    raise RuntimeError("first attempt fails; the retry waits 3 s")


@app.job(retries=3, retry_initial_delay_s=0.05, retry_max_delay_s=0.1, retry_on=ConnectionError)
def picky(key: str, error: str) -> int:
    """Fails its first run with `error`; only ConnectionError (or RetryableError) is retried."""
    n = _count(key)
    if n == 1:
        raise {
            "connection": ConnectionError("upstream reset"),
            "value": ValueError("a bug: running it again will not help"),
            "permanent": PermanentError("card declined"),
            "retryable": RetryableError("the job asks for another try"),
        }[error]
    return n


@app.job(retries=3, retry_initial_delay_s=0.05)
def mistyped(key: str, value: str) -> int:
    """Promises an int and returns ``value`` as it is ("7" still reads as 7; "seven" does
    not)."""
    _count(key)
    return value  # type: ignore[return-value]


@app.job(schedule="* * * * * */2", schedule_input={"key": "every-2s"})
def every_two_seconds(key: str, ctx: JobContext) -> int:
    """Fired by `jobcord scheduler tests.apps.lifecycle:app` (tests only start it on purpose)."""
    _redis().rpush(f"jobcord:test:ticks:{key}", ctx.request_id)
    return _count(key)


@app.job()
def binds(tag: str) -> str:
    """Binds log context of its own and leaves it bound (jobcord must not carry it over)."""
    import structlog

    structlog.contextvars.bind_contextvars(leaked=tag)
    return tag


@app.job()
def chatty(note: str) -> str:
    """Logs through the standard library, as a job's own code does."""
    logging.getLogger("tests.chatty").info("the job says %s", note)
    return note


@app.job()
def always_fails(reason: str) -> None:
    raise ValueError(f"bad thing: {reason}")


@app.job()
def crash(key: str) -> None:
    _count(key)
    os.kill(os.getpid(), signal.SIGKILL)


@app.job(upload=True)
def write_files(ctx: JobContext, n: int) -> dict[str, int]:
    (ctx.output_dir / "nested").mkdir()
    for i in range(n):
        (ctx.output_dir / "nested" / f"part-{i}.txt").write_text(f"part {i}\n")
    return {"written": n}


@app.job(upload=True)
def tricky_files(ctx: JobContext) -> str:
    """A hostile output directory: only ok.txt is a regular file."""
    out = ctx.output_dir
    (out / "ok.txt").write_text("fine\n")
    (out / "passwd").symlink_to("/etc/passwd")
    (out / "etc").symlink_to("/etc", target_is_directory=True)
    os.mkfifo(out / "pipe")
    return "done"


@app.job(upload=True)
def attempt_blob(ctx: JobContext, seconds: float) -> bytes:
    """Bytes (so the output goes to the result store) and a file naming the attempt."""
    time.sleep(seconds)
    (ctx.output_dir / "who.txt").write_text(f"attempt {ctx.attempt}")
    return f"attempt {ctx.attempt}".encode()


@app.job()
def big(n: int) -> list[int]:
    return list(range(n))


@app.job()
def blob(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@app.job()
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.job()
def progress(ctx: JobContext, steps: int) -> int:
    for i in range(steps):
        ctx.progress((i + 1) / steps, f"step {i + 1}")
    return steps


@app.job(node_selector=NodeSelector(gpu_count=1, include=["h100"]))
def where_am_i(ctx: JobContext) -> dict[str, str]:
    """A GPU job: reports the pinning its process was given."""
    return {
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "<unset>"),
        "ctx.devices": ctx.devices,
    }


def _placement(ctx: JobContext) -> dict[str, object]:
    return {"pid": os.getpid(), "devices": ctx.devices}


@app.job(node_selector=NodeSelector(gpu_count=1, min_vram_gb_per_gpu=40))
def wide(ctx: JobContext, seconds: float = 0.0) -> dict[str, object]:
    """Prefers the cheapest 40 GB class (a6000); h100 consumers may take it as a fallback."""
    time.sleep(seconds)
    return _placement(ctx)


@app.job(node_selector=NodeSelector(gpu_count=2, include=["h100"]))
def two_gpus(ctx: JobContext) -> dict[str, object]:
    return _placement(ctx)


@app.job(node_selector=NodeSelector(gpu_count=1, include=["h100"]))
def gpu_pid(ctx: JobContext) -> dict[str, object]:
    return _placement(ctx)


@app.job()
def cuda_fault(key: str) -> int:
    """Fails the way a sticky CUDA error does; the process that ran it is recorded."""
    _redis().set(f"jobcord:test:pid:{key}", os.getpid())
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


@app.job(node_selector=NodeSelector(gpu_count=1, include=["h100"]), timeout=60)
def torch_matmul(n: int, ctx: JobContext) -> dict[str, object]:
    """A real tensor job (torch CPU build here) in a child pinned to a (fake) H100."""
    import torch

    a = torch.arange(n * n, dtype=torch.float32).reshape(n, n)
    return {
        "trace": float((a @ torch.eye(n)).trace().item()),
        "cuda_available": torch.cuda.is_available(),
        "CUDA_VISIBLE_DEVICES": os.environ["CUDA_VISIBLE_DEVICES"],
        "pid": os.getpid(),
    }


@app.cord(public_api_path="/double", method="POST", timeout=10)
def double(x: int) -> dict[str, int]:
    if x < 0:
        raise ValueError("x must not be negative")
    return {"y": 2 * x}


@app.cord(public_api_path="/hello", method="GET", timeout=10)
def hello(name: str = "world") -> str:
    return f"hello {name}"


@app.cord(public_api_path="/tokens", method="POST", stream=True, timeout=60)
def tokens(n: int, delay_s: float = 0.0, key: str = "") -> Iterator[dict[str, int]]:
    for i in range(n):
        if key:
            _redis().set(f"jobcord:test:tokens:{key}", i)
        yield {"i": i}
        time.sleep(delay_s)


@app.cord(public_api_path="/nap", method="POST", timeout=60)
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
