"""Dynamic batching: a small torch MLP served one request per call vs batched, same consumer.

    .venv/bin/python bench/bench_batch.py [--seconds 6] [--callers 1,16,64,256]

N caller threads each call ``run_remote`` in a loop (one 32-float vector per request) for
``--seconds``; one consumer with one child serves ``embed_one`` (a forward pass per request)
and ``embed_batch`` (``max_batch_size=64, batch_wait_ms=10``). Prints throughput and p50/p99
latency per caller count, and the batched/unbatched throughput ratio. On a GPU machine the
child runs on the first GPU (the same script); here the model runs on the CPU (one torch
thread). Redis: JOBCORD_BENCH_REDIS_URL, else 127.0.0.1:6379/12, else an embedded one.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_lifecycle import Engine, _clean, _redis_url  # noqa: E402


class Consumer(Engine):
    name = "jobcord"

    def __init__(self, url: str, gpus: str) -> None:
        super().__init__(url, 1)
        self.gpus = gpus

    def consumer_cmd(self) -> list[str]:
        app = "bench.batch_apps:app"
        return [sys.executable, "-m", "jobcord.cli", "worker", app, "--gpus", self.gpus,
                "--concurrency", "1"]  # fmt: skip

    def ready_marker(self) -> str:
        return "consumer ready"


def _load(fn, callers: int, seconds: float, width: int) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    """(requests/s, latencies in ms) of ``callers`` threads calling ``fn`` for ``seconds``."""
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(callers)]
    rng = random.Random(0)
    vector = [rng.uniform(-1, 1) for _ in range(width)]

    def caller(mine: list[float]) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            fn(vector)
            mine.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=caller, args=(lat,)) for lat in latencies]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    flat = sorted(x for lat in latencies for x in lat)
    return len(flat) / took, flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--callers", default="1,16,64,256")
    args = parser.parse_args()
    url = _redis_url()
    os.environ["JOBCORD_REDIS_URL"] = url
    from jobcord.consumers.devices import discover_devices

    gpus = discover_devices()
    if gpus:
        os.environ["BENCH_GPU_CLASS"] = gpus[0].gpu_class or ""
    import redis

    from bench import batch_apps
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings

    set_default_client(RedisClient(load_settings(redis_url=url)))
    r = redis.Redis.from_url(url)
    _clean(r)
    consumer = Consumer(url, "0" if gpus else "none")
    consumer.env = {**consumer.env, **os.environ}
    consumer.ready_count = 1
    consumer.start()
    rows = []
    try:
        for fn in (batch_apps.embed_one, batch_apps.embed_batch):
            fn.run_remote([0.0] * batch_apps.WIDTH_IN)  # warm
        for callers in [int(c) for c in args.callers.split(",")]:
            width = batch_apps.WIDTH_IN
            one = _load(batch_apps.embed_one.run_remote, callers, args.seconds, width)
            many = _load(batch_apps.embed_batch.run_remote, callers, args.seconds, width)
            rows.append((callers, one, many))
    finally:
        consumer.stop()
        _clean(r)
    where = f"{gpus[0].name}" if gpus else "CPU, one torch thread"
    table = Table(
        title=f"MLP {batch_apps.WIDTH_IN}-{batch_apps.HIDDEN}-{batch_apps.HIDDEN}-"
        f"{batch_apps.WIDTH_OUT} on {where}; one consumer, one child; {args.seconds:g} s per cell",
        caption="unbatched: one request per call; batched: max_batch_size=64, batch_wait_ms=10",
    )
    for col in ("callers", "unbatched req/s", "p50 / p99 ms", "batched req/s", "p50 / p99 ms"):
        table.add_column(col, justify="right")
    table.add_column("throughput ratio", justify="right")
    p = lambda xs, q: xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")  # noqa: E731
    for callers, (rate1, lat1), (rate2, lat2) in rows:
        table.add_row(
            str(callers),
            f"{rate1:,.0f}",
            f"{statistics.median(lat1):.1f} / {p(lat1, 0.99):.1f}",
            f"{rate2:,.0f}",
            f"{statistics.median(lat2):.1f} / {p(lat2, 0.99):.1f}",
            f"{rate2 / rate1:.2f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
