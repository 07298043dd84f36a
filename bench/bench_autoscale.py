"""Autoscaling: the cold start an app at zero pays, and how fast a burst reaches full capacity.

    .venv/bin/python bench/bench_autoscale.py [--gpus 4] [--burst 64] [--job-ms 200] [--rounds 3]

1. Cold start: the app is at zero replicas; one request; its wait before it starts (spawn,
   import, ``on_startup`` with torch) against the same request on a warm replica.
2. A burst of --burst requests of --job-ms each, from zero replicas on --gpus devices
   (``jobcord worker --autoscale``): time until every device runs a replica, and until the
   burst is done, against a fixed warm worker (``jobcord worker --gpus all --no-autoscale``, one
   child per GPU, started and warm before the burst).
Without a GPU, fake NVML devices pin the children and torch runs on the CPU.
Redis: JOBCORD_BENCH_REDIS_URL, else 127.0.0.1:6379/12, else an embedded redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_lifecycle import _clean, _redis_url  # noqa: E402


class Worker:
    """A ``jobcord worker`` subprocess, ready once its log says so."""

    def __init__(self, args: list[str], env: dict[str, str], marker: str) -> None:
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobcord.cli", "worker", "bench.scale_apps:app", *args],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                if marker in line:
                    self.ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not self.ready.wait(120):
            self.stop()
            raise RuntimeError("worker did not get ready")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def _children(app: str) -> list[dict]:
    from jobcord.producers import default_client
    from jobcord.storage.registry import ConsumerRegistry

    client = default_client()
    live = ConsumerRegistry(client.redis).live()  # type: ignore[attr-defined]
    return [ch for c in live if c["app"] == app for ch in c.get("children", [])]


def cold_starts(rounds: int) -> tuple[list[float], list[float]]:
    """(waits before a cold request started, waits before a warm one started), seconds."""
    from bench.scale_apps import infer

    cold, warm = [], []
    for _ in range(rounds):
        deadline = time.monotonic() + 60
        while _children("bench-scale") and time.monotonic() < deadline:
            time.sleep(0.1)  # at zero: every replica gone
        r = infer.async_run_remote(0.0).wait(60)
        cold.append(r.started_at - r.created_at)
        r = infer.async_run_remote(0.0).wait(60)
        warm.append(r.started_at - r.created_at)
    return cold, warm


def burst(n: int, job_ms: float, gpus: int, *, watch: bool) -> tuple[float | None, float]:
    """(seconds until ``gpus`` replicas run, seconds until the burst is done)."""
    from bench.scale_apps import infer

    started = time.monotonic()
    handles = [infer.async_run_remote(job_ms) for _ in range(n)]
    full: float | None = None
    pending = list(handles)
    while pending:
        if watch and full is None:
            ready = sum(1 for ch in _children("bench-scale") if ch["state"] == "ready")
            if ready >= gpus:
                full = time.monotonic() - started
        pending = [h for h in pending if not h.status().is_terminal]
        time.sleep(0.2)  # the poll itself shares the cores with the replicas
    done = time.monotonic() - started
    bad = [h.request_id for h in handles if h.status().status != "SUCCEEDED"]
    if bad:
        raise RuntimeError(f"{len(bad)} requests did not succeed")
    return full, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--job-ms", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from jobcord.storage.logs import configure_logging

    configure_logging("console", "WARNING")
    url = _redis_url()
    import redis

    _clean(redis.Redis.from_url(url))
    from jobcord.consumers.devices import discover_devices

    real = discover_devices()
    if not real:
        fake = [
            {"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": f"GPU-scale-{i}"}
            for i in range(args.gpus)
        ]
        os.environ["JOBCORD_FAKE_GPUS"] = json.dumps(fake)
    devices = discover_devices()[: args.gpus]
    os.environ.update(
        {
            "JOBCORD_REDIS_URL": url,
            "BENCH_GPU_CLASS": devices[0].gpu_class or "h100",
            "BENCH_MAX_REPLICAS": str(len(devices)),
            "JOBCORD_LOG_FORMAT": "json",
            "PYTHONPATH": str(ROOT),
        }
    )
    env = dict(os.environ)
    gpus = ",".join(str(d.index) for d in devices)
    where = f"{len(devices)} x {devices[0].name} ({'real' if real else 'fake NVML, CPU torch'})"

    scaling = Worker(["--gpus", gpus, "--autoscale"], env, "autoscaling host ready")
    try:
        cold, warm = cold_starts(args.rounds)
        deadline = time.monotonic() + 60
        while _children("bench-scale") and time.monotonic() < deadline:
            time.sleep(0.1)
        full, scaled_done = burst(args.burst, args.job_ms, len(devices), watch=True)
    finally:
        scaling.stop()
    _clean(redis.Redis.from_url(url))
    fixed = Worker(["--gpus", gpus, "--no-autoscale"], env, "consumer ready")
    try:
        _, fixed_done = burst(args.burst, args.job_ms, len(devices), watch=False)
    finally:
        fixed.stop()
    _clean(redis.Redis.from_url(url))

    table = Table(title=f"autoscaling on {where}; burst {args.burst} x {args.job_ms:.0f} ms")
    for col in ("measure", "autoscaled from zero", "fixed warm worker", "ratio"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    med = statistics.median
    table.add_row(
        f"wait before start, one request (median of {args.rounds})",
        f"{med(cold) * 1000:,.0f} ms (cold start)",
        f"{med(warm) * 1000:,.0f} ms (warm replica)",
        "",
    )
    table.add_row(
        f"burst -> {len(devices)} replicas running",
        f"{full:.2f} s" if full is not None else "never",
        "0 s (started before)",
        "",
    )
    ideal = args.burst * args.job_ms / 1000 / len(devices)
    table.add_row(
        f"burst done (ideal {ideal:.1f} s)",
        f"{scaled_done:.2f} s",
        f"{fixed_done:.2f} s",
        f"{scaled_done / fixed_done:.2f}x",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
