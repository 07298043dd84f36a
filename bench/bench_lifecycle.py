"""The hot path: jobcord vs plain dramatiq as its users run it, on the same Redis, in one run.

    .venv/bin/python bench/bench_lifecycle.py [--jobs 2000] [--samples 200] [--concurrency C]

The reference is dramatiq's CLI at its defaults (one process per CPU, 8 threads each) with its
Results middleware, so both sides keep results; jobcord runs `jobcord worker --gpus none` at
its defaults unless --concurrency is given. Prints one table (settings in its caption):
enqueue rate, Redis bytes per queued and per finished job, the idle synchronous round trip
through each system's result API (p50/p99), no-op and 10 ms drain rates, Redis commands per
job, and where the CPU goes during the no-op drain (the consumer's main process, its job or
worker processes, the Redis server, this client), with ratios. Medians of --rounds rounds, the
engines' order alternating.
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
        from jobcord.storage.embedded_redis import ensure_embedded_redis

        return ensure_embedded_redis(Path(tempfile.mkdtemp(prefix="jobcord-bench-")))


def _clean(r: redis.Redis) -> None:
    for pattern in ("jobcord:*", "jobcord.dq:*", "bench*"):
        keys = list(r.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i : i + 500])


class Engine:
    name: str
    ready_count = 1  # ready lines to wait for (one per consumer process)

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

    def pending(self, r: redis.Redis) -> int:
        """Jobs enqueued and not yet finished."""
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
        ready = 0
        for line in self.proc.stdout:
            ready += self.ready_marker() in line
            if ready == self.ready_count:  # one line per process
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
    """``jobcord worker bench.apps:app --gpus none [--concurrency C]`` (None: its default)."""

    name = "jobcord"

    def __init__(self, url: str, threads: int | None = None) -> None:
        super().__init__(url, threads or 0)
        self.concurrency = threads
        os.environ["JOBCORD_REDIS_URL"] = url
        from bench import apps
        from jobcord.producers import RedisClient, set_default_client
        from jobcord.storage.settings import load_settings

        set_default_client(RedisClient(load_settings(redis_url=url)))
        self.enqueue_noop = apps.noop.async_run_remote
        self.enqueue_stamp = apps.stamp.async_run_remote
        self.enqueue_hold = apps.hold.async_run_remote
        self.enqueue_sleep = apps.sleep_ms.async_run_remote
        self.enqueue_sleep_shared = apps.sleep_ms_shared.async_run_remote
        self.call_noop = apps.noop.run_remote

    @property
    def settings(self) -> str:
        c = "" if self.concurrency is None else f" --concurrency {self.concurrency}"
        return f"jobcord worker bench.apps:app --gpus none{c}" + ("" if c else " (defaults)")

    def consumer_cmd(self) -> list[str]:
        cmd = [sys.executable, "-m", "jobcord.cli", "worker", "bench.apps:app", "--gpus", "none"]
        if self.concurrency is not None:
            cmd += ["--concurrency", str(self.concurrency)]
        return cmd

    def ready_marker(self) -> str:
        return "consumer ready"

    def pending(self, r: redis.Redis) -> int:
        # The app's requests queued or running (the submit and finish scripts keep it).
        return int(r.hget("jobcord:inflight", "bench") or 0)


class PlainDramatiq(Engine):
    """dramatiq + its Results middleware. ``cli=True``: its own CLI, as its users run it
    (``processes``/``threads`` None: the CLI's defaults, one process per CPU x 8 threads);
    ``cli=False``: one worker in one process (the redelivery benchmark SIGKILLs it)."""

    name = "dramatiq"

    def __init__(
        self,
        url: str,
        threads: int | None = None,
        *,
        processes: int | None = None,
        cli: bool = False,
    ) -> None:
        super().__init__(url, threads or 8)
        os.environ["JOBCORD_REDIS_URL"] = url
        from bench import plain_dramatiq

        self.cli = cli
        self.processes = processes
        self.given_threads = threads
        self.ready_count = (processes or os.cpu_count() or 1) if cli else 1
        actors = plain_dramatiq.actors()
        # dramatiq's hash of waiting and unacked messages: empty once every job was acked.
        self.messages_key = f"{plain_dramatiq.NAMESPACE}:{plain_dramatiq.QUEUE}.msgs"
        self.enqueue_noop = actors["noop"].send
        self.enqueue_stamp = actors["stamp"].send
        self.enqueue_hold = actors["hold"].send
        self.enqueue_sleep = actors["sleep_ms"].send
        self.enqueue_sleep_shared = self.enqueue_sleep  # its threads share every process
        noop = actors["noop"]
        self.call_noop = lambda: noop.send().get_result(block=True, timeout=30_000)

    @property
    def settings(self) -> str:
        if not self.cli:
            return f"one process, {self.threads} threads"
        p = "" if self.processes is None else f" -p {self.processes}"
        t = "" if self.given_threads is None else f" -t {self.given_threads}"
        defaults = " (CLI defaults)" if not (p or t) else ""
        return f"dramatiq bench.plain_dramatiq{p}{t}{defaults} + Results(RedisBackend)"

    def consumer_cmd(self) -> list[str]:
        if not self.cli:
            return [sys.executable, str(ROOT / "bench" / "plain_dramatiq.py"), str(self.threads)]
        cmd = [sys.executable, "-m", "dramatiq", "bench.plain_dramatiq"]
        if self.processes is not None:
            cmd += ["--processes", str(self.processes)]
        if self.given_threads is not None:
            cmd += ["--threads", str(self.given_threads)]
        return cmd

    def ready_marker(self) -> str:
        return "ready for action" if self.cli else "ready"

    def pending(self, r: redis.Redis) -> int:
        return int(r.hlen(self.messages_key))


def _drain(engine: Engine, r: redis.Redis, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while engine.pending(r):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{engine.name} did not drain")
        time.sleep(0.002)


def _commands(r: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in r.info("commandstats").values())


class CpuMeter:
    """CPU seconds spent by each side of a run: the consumer's main process, its job (or
    worker) processes, the Redis server (when it runs on this machine) and this client."""

    SIDES = ("consumer main", "job/worker procs", "Redis server", "client")

    def __init__(self, consumer_pid: int, r: redis.Redis) -> None:
        import psutil

        self._psutil = psutil
        self.consumer = psutil.Process(consumer_pid)
        redis_pid = int(r.info("server").get("process_id", 0))
        self.redis = psutil.Process(redis_pid) if psutil.pid_exists(redis_pid) else None
        self.me = psutil.Process()

    def _cpu(self, procs: list) -> float:  # type: ignore[type-arg]
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except self._psutil.Error:  # a child that exited meanwhile
                pass
        return total

    def read(self) -> dict[str, float]:
        children = self.consumer.children(recursive=True)
        return dict(
            zip(
                self.SIDES,
                (
                    self._cpu([self.consumer]),
                    self._cpu(children),
                    self._cpu([self.redis]) if self.redis else float("nan"),
                    self._cpu([self.me]),
                ),
                strict=True,
            )
        )


def _burst(engine: Engine, r: redis.Redis, jobs: int, enqueue: Callable[[], object]) -> float:
    """Jobs/s from the first enqueue of a burst until every message is acked."""
    started = time.perf_counter()
    for _ in range(jobs):
        enqueue()
    _drain(engine, r)
    return jobs / (time.perf_counter() - started)


def measure(engine: Engine, r: redis.Redis, jobs: int, samples: int) -> dict[str, float]:
    _clean(r)
    # Enqueue rate and Redis memory per queued job, no consumer running.
    before = r.info("memory")["used_memory"]
    started = time.perf_counter()
    for _ in range(jobs):
        engine.enqueue_noop()
    enqueue_rate = jobs / (time.perf_counter() - started)
    per_job_bytes = (r.info("memory")["used_memory"] - before) / jobs
    _clean(r)
    engine.start()
    try:
        # Idle synchronous round trip through each system's own result API.
        round_trips = []
        for _ in range(samples):
            time.sleep(random.uniform(0.005, 0.02))
            t0 = time.perf_counter()
            engine.call_noop()
            round_trips.append((time.perf_counter() - t0) * 1000)
        _drain(engine, r)
        calls = _commands(r)
        assert engine.proc is not None
        meter = CpuMeter(engine.proc.pid, r)
        cpu_before = meter.read()
        memory_before = r.info("memory")["used_memory"]
        noop_rate = _burst(engine, r, jobs, engine.enqueue_noop)
        cpu_after = meter.read()
        # What a finished request keeps in Redis for its retention (record, events, result).
        finished_bytes = (r.info("memory")["used_memory"] - memory_before) / jobs
        commands = (_commands(r) - calls) / jobs
        sleep_rate = _burst(engine, r, max(jobs // 4, 1), lambda: engine.enqueue_sleep(10))
        shared_rate = _burst(engine, r, max(jobs // 4, 1), lambda: engine.enqueue_sleep_shared(10))
    finally:
        engine.stop()
        _clean(r)
    round_trips.sort()
    return {
        "enqueue/s (one client thread)": enqueue_rate,
        "drain no-op jobs/s": noop_rate,
        "drain 10 ms jobs/s": sleep_rate,
        "drain 10 ms jobs/s, jobcord's job with concurrency=8": shared_rate,
        "sync round trip p50 ms": statistics.median(round_trips),
        "sync round trip p99 ms": round_trips[
            min(len(round_trips) - 1, int(len(round_trips) * 0.99))
        ],
        "Redis bytes per queued job": per_job_bytes,
        "Redis bytes per finished job (kept for retention)": finished_bytes,
        "Redis commands per no-op job": commands,
        **{
            f"CPU ms/no-op job: {side}": (cpu_after[side] - cpu_before[side]) / jobs * 1000
            for side in CpuMeter.SIDES
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobcord's --concurrency (default: its own)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = _redis_url()
    r = redis.Redis.from_url(url)
    engines: list[Engine] = [Jobcord(url, args.concurrency), PlainDramatiq(url, cli=True)]
    results: dict[str, list[dict[str, float]]] = {e.name: [] for e in engines}
    for round_ in range(args.rounds):
        for engine in engines if round_ % 2 == 0 else reversed(engines):
            results[engine.name].append(measure(engine, r, args.jobs, args.samples))
    med = {
        name: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    table = Table(
        title=f"{args.jobs} jobs per burst, median of {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs, Redis {url}",
        caption="\n".join(f"{e.name}: {e.settings}" for e in engines)
        + f"\nRedis {r.info('server')['redis_version']}, stream-node-max-bytes "
        + str(r.config_get("stream-node-max-bytes")["stream-node-max-bytes"])
        + " (jobcord's own Redis setups use 512)",
    )
    table.add_column("metric")
    table.add_column("jobcord", justify="right")
    table.add_column("dramatiq", justify="right")
    table.add_column("jobcord / dramatiq", justify="right")
    for metric in med["jobcord"]:
        a, b = med["jobcord"][metric], med["dramatiq"][metric]
        fmt = "{:,.2f}" if max(abs(a), abs(b)) < 10 else "{:,.1f}"
        table.add_row(metric, fmt.format(a), fmt.format(b), f"{a / b:.2f}x" if b else "-")
    Console().print(table)


if __name__ == "__main__":
    main()
