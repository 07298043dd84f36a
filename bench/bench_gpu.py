"""Per-job overhead of a warm, GPU-pinned consumer, and the time to replace a killed child.

    .venv/bin/python bench/bench_gpu.py [--jobs 200] [--kills 5]

1. A tiny torch job (64x64 matmul on the child's device) through jobcord (``run_remote``,
   one at a time, to a warm consumer pinned by GPU UUID) versus calling the same function
   directly in a loop in this process, on the same kind of device: medians, and the overhead.
2. A child SIGKILLed -> its replacement ready (spawn, import the app, ``on_startup`` with
   torch and CUDA initialisation): median of --kills.
On a machine without a GPU a fake NVML H100 pins the child and torch runs on the CPU.
Redis: JOBCORD_BENCH_REDIS_URL, else 127.0.0.1:6379/12, else an embedded redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_lifecycle import Engine, _clean, _redis_url  # noqa: E402

FAKE_H100 = json.dumps([{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": "GPU-bench"}])


def _devices() -> tuple[list, bool]:
    from jobcord.consumers.devices import discover_devices

    real = discover_devices()
    if real:
        return real, True
    os.environ["JOBCORD_FAKE_GPUS"] = FAKE_H100
    return discover_devices(), False


class PinnedConsumer(Engine):
    name = "jobcord"

    def consumer_cmd(self) -> list[str]:
        return [sys.executable, "-m", "jobcord.cli", "worker", "bench.gpu_apps:app", "--gpus", "0"]

    def ready_marker(self) -> str:
        return "consumer ready"


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def direct_loop(jobs: int) -> list[float]:
    from bench.gpu_apps import pick_device, tiny_body

    state = pick_device()
    tiny_body(state, 8)  # warm up, as the consumer's child is warm
    out = []
    for _ in range(jobs):
        t0 = time.perf_counter()
        tiny_body(state, 8)
        out.append(time.perf_counter() - t0)
    return out


def through_jobcord(url: str, jobs: int) -> list[float]:
    import redis

    os.environ["JOBCORD_REDIS_URL"] = url
    from bench.gpu_apps import tiny
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings

    set_default_client(RedisClient(load_settings(redis_url=url)))
    _clean(redis.Redis.from_url(url))
    consumer = PinnedConsumer(url, 1)
    consumer.env = {**consumer.env, **os.environ}
    consumer.start()
    try:
        tiny.run_remote(8)  # warm
        out = []
        for _ in range(jobs):
            t0 = time.perf_counter()
            tiny.run_remote(8)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        consumer.stop()
        _clean(redis.Redis.from_url(url))


def child_replacement(url: str, devices: list, kills: int) -> list[float]:
    """SIGKILL a warm child, start its replacement, wait for its Ready (as a consumer's
    supervisor does when a child dies): spawn, import, on_startup with torch."""
    import tempfile

    from jobcord.consumers.board import Board
    from jobcord.consumers.child import ChildConfig
    from jobcord.consumers.children import ChildProcess
    from jobcord.consumers.devices import pinning_env
    from jobcord.consumers.fetcher import QueuePlan
    from jobcord.consumers.protocol import Ready
    from jobcord.storage.settings import load_settings

    board = Board(1, 1)
    config = ChildConfig(
        app_ref="bench.gpu_apps:app",
        env=pinning_env(devices[:1]),
        log_format="json",
        worker="bench-respawn",
        place=0,
        wake_name="bench-respawn",
        plan=QueuePlan(own=[]),  # serves nothing: only its start is measured
        outputs=tempfile.mkdtemp(prefix="jobcord-bench-"),
    )
    child = ChildProcess(
        config,
        board.child(0),
        board.handle(),
        load_settings(redis_url=url),
        name="bench",
        kill_grace_s=1.0,
        startup_timeout_s=600.0,
    )

    def start_and_wait() -> None:
        child.start()
        while not isinstance(child.conn.recv(), Ready):
            pass

    start_and_wait()
    out = []
    try:
        for _ in range(kills):
            t0 = time.perf_counter()
            os.kill(child.pid, signal.SIGKILL)
            child.reap()
            start_and_wait()
            out.append(time.perf_counter() - t0)
    finally:
        child.kill_now()
        child.reap()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("JOBCORD_LOG_FORMAT", "json")
    from jobcord.storage.logs import configure_logging

    configure_logging("console", "WARNING")  # the table, not the slot's info lines
    devices, real = _devices()
    os.environ["BENCH_GPU_CLASS"] = devices[0].gpu_class or "h100"
    import torch

    where = f"{devices[0].name} ({'real' if real else 'fake NVML; torch on CPU'})"
    direct = direct_loop(args.jobs)
    remote = through_jobcord(_redis_url(), args.jobs)
    respawn = child_replacement(_redis_url(), devices, args.kills)
    table = Table(
        title=f"tiny torch job, {args.jobs} sequential calls, {where}, torch {torch.__version__}"
    )
    for col in ("measure", "median ms", "p90 ms", "vs direct"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    p90 = lambda xs: sorted(xs)[int(len(xs) * 0.9)] * 1000  # noqa: E731
    table.add_row("direct call in one process", f"{_ms(direct):.3f}", f"{p90(direct):.3f}", "1x")
    table.add_row(
        "run_remote via warm pinned consumer",
        f"{_ms(remote):.3f}",
        f"{p90(remote):.3f}",
        f"+{_ms(remote) - _ms(direct):.2f} ms",
    )
    table.add_row(
        f"child SIGKILL -> replacement ready ({args.kills} kills)",
        f"{_ms(respawn):.0f}",
        f"{p90(respawn):.0f}",
        "",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
