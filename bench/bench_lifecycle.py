"""jobcord vs plain dramatiq on the same Redis, for no-op jobs, in one run.

    .venv/bin/python bench/bench_lifecycle.py [--jobs 2000] [--samples 200] [--threads 4]

Prints one table: enqueue rate, end-to-end jobs/s through one consumer process, and the idle
enqueue-to-start latency (p50/p99), with jobcord/dramatiq ratios. Medians of --rounds runs.
Uses JOBCORD_BENCH_REDIS_URL (default redis://127.0.0.1:6379/12), or an embedded
redis-server when nothing answers there; only the benchmark's own keys are deleted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _redis_url() -> str:
    url = os.environ.get("JOBCORD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    try:
        redis.Redis.from_url(url, socket_timeout=1).ping()
        return url
    except (redis.ConnectionError, OSError):
        from storage.embedded_redis import ensure_embedded_redis

        return ensure_embedded_redis(Path(tempfile.mkdtemp(prefix="jobcord-bench-")))


def _clean(r: redis.Redis) -> None:
    for pattern in ("jobcord:*", "jobcord.dq:*", "bench*"):
        keys = list(r.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i : i + 500])


class Engine:
    name: str
    messages_key: str  # dramatiq's hash of waiting + unacked messages on the queue

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.threads = threads
        self.env = {
            **os.environ,
            "JOBCORD_REDIS_URL": url,
            "JOBCORD_LOG_FORMAT": "json",
            "PYTHONPATH": str(ROOT),
        }
        self.proc: subprocess.Popen | None = None

    def consumer_cmd(self) -> list[str]:
        raise NotImplementedError

    def ready_marker(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.consumer_cmd(),
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.ready_marker() in line:
                # Keep reading its output so the consumer never blocks on a full pipe.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        raise RuntimeError(f"{self.name} consumer did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:  # a consumer still draining a long job
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    enqueue_noop: Callable[[], object]
    enqueue_stamp: Callable[[int, float], object]
    enqueue_hold: Callable[[str, float], object]


class Jobcord(Engine):
    name = "jobcord"
    messages_key = "jobcord.dq:jobcord.bench.cpu.msgs"

    def __init__(self, url: str, threads: int) -> None:
        super().__init__(url, threads)
        os.environ["JOBCORD_REDIS_URL"] = url
        from bench import apps
        from producers import RedisClient, set_default_client
        from storage.settings import load_settings

        set_default_client(RedisClient(load_settings(redis_url=url)))
        self.enqueue_noop = apps.noop.async_run_remote
        self.enqueue_stamp = apps.stamp.async_run_remote
        self.enqueue_hold = apps.hold.async_run_remote

    def consumer_cmd(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jobcord.cli",
            "worker",
            "bench.apps:app",
            "--concurrency",
            str(self.threads),
        ]

    def ready_marker(self) -> str:
        return "consumer ready"


class PlainDramatiq(Engine):
    name = "dramatiq"

    def __init__(self, url: str, threads: int) -> None:
        super().__init__(url, threads)
        os.environ["JOBCORD_REDIS_URL"] = url
        from bench import plain_dramatiq

        noop, stamp, hold = plain_dramatiq.actors()
        self.messages_key = f"{plain_dramatiq.NAMESPACE}:{plain_dramatiq.QUEUE}.msgs"
        self.enqueue_noop = noop.send
        self.enqueue_stamp = stamp.send
        self.enqueue_hold = hold.send

    def consumer_cmd(self) -> list[str]:
        return [sys.executable, str(ROOT / "bench" / "plain_dramatiq.py"), str(self.threads)]

    def ready_marker(self) -> str:
        return "ready"


def _drain(r: redis.Redis, key: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while r.hlen(key):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key} did not drain")
        time.sleep(0.002)


def measure(engine: Engine, r: redis.Redis, jobs: int, samples: int) -> dict[str, float]:
    _clean(r)
    # Enqueue rate, no consumer running.
    started = time.perf_counter()
    for _ in range(jobs):
        engine.enqueue_noop()
    enqueue_rate = jobs / (time.perf_counter() - started)
    _clean(r)
    engine.start()
    try:
        # Idle enqueue-to-start latency: one request at a time, idle gaps between.
        latencies = []
        for i in range(samples):
            time.sleep(random.uniform(0.02, 0.05))
            t0 = time.time()
            engine.enqueue_stamp(i, t0)
            key = f"bench:lat:{i}"
            deadline = time.monotonic() + 10
            while (value := r.get(key)) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{engine.name}: sample {i} never started")
                time.sleep(0.0005)
            latencies.append(float(value) * 1000)
        _drain(r, engine.messages_key)
        # End-to-end throughput: enqueue a burst and wait until every message is acked.
        started = time.perf_counter()
        for _ in range(jobs):
            engine.enqueue_noop()
        _drain(r, engine.messages_key)
        throughput = jobs / (time.perf_counter() - started)
    finally:
        engine.stop()
        _clean(r)
    latencies.sort()
    return {
        "enqueue/s": enqueue_rate,
        "end-to-end jobs/s": throughput,
        "enqueue->start p50 ms": statistics.median(latencies),
        "enqueue->start p99 ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = _redis_url()
    r = redis.Redis.from_url(url)
    engines = [Jobcord(url, args.threads), PlainDramatiq(url, args.threads)]
    results: dict[str, list[dict[str, float]]] = {e.name: [] for e in engines}
    for round_ in range(args.rounds):
        for engine in engines if round_ % 2 == 0 else reversed(engines):
            results[engine.name].append(measure(engine, r, args.jobs, args.samples))
    med = {
        name: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    table = Table(
        title=f"no-op jobs, {args.jobs} per burst, {args.threads} threads/slots, "
        f"median of {args.rounds} rounds, Redis {url}"
    )
    table.add_column("metric")
    table.add_column("jobcord", justify="right")
    table.add_column("dramatiq", justify="right")
    table.add_column("jobcord / dramatiq", justify="right")
    for metric in med["jobcord"]:
        a, b = med["jobcord"][metric], med["dramatiq"][metric]
        table.add_row(metric, f"{a:,.1f}", f"{b:,.1f}", f"{a / b:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
