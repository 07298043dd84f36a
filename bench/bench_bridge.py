"""A GPU step in a team's dramatiq flow: inline in a dramatiq actor, or a jobcord job behind
the bridge (``jobcord.dramatiq``). Same Redis broker, same dramatiq CLI on the same cores.

    .venv/bin/python bench/bench_bridge.py [--requests 30] [--kills 3]

1. Latency: one flow at a time, ``ingest.send()`` to ``stored`` running, the GPU step
   0.05 s; median and p90 of --requests flows.
2. A dramatiq worker SIGKILLed while the GPU step runs (2 s), a new one started: seconds
   from the kill to ``stored`` (capped at 90), how often the GPU step and ``stored`` ran,
   per flow, over --kills flows. dramatiq redelivers a dead worker's messages after its
   heartbeat timeout (60 s by default; 3 s here for both, named under the table) and a
   random maintenance pass (its default chance, untouched).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis
from bench_lifecycle import _clean, _redis_url
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
KILL_HEARTBEAT_MS = 3000
CAP_S = 90.0


class Processes:
    """The jobcord worker and scheduler (the bridged flow's GPU side), and dramatiq's CLI."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.jobcord: list[subprocess.Popen] = []
        self.dramatiq: subprocess.Popen | None = None

    def start_jobcord(self) -> None:
        out = subprocess.DEVNULL
        cli = [sys.executable, "-m", "jobcord.cli"]
        worker = [*cli, "worker", "bridge_apps:app", "--gpus", "none", "--concurrency", "1"]
        for cmd in (worker, [*cli, "scheduler"]):
            self.jobcord.append(
                subprocess.Popen(cmd, cwd=ROOT / "bench", env=self.env, stdout=out, stderr=out)
            )
        time.sleep(3)  # both ready (the worker's children import the app)

    def start_dramatiq(self) -> None:
        # The dramatiq CLI's defaults: a process per core, 8 threads each.
        self.dramatiq = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "bridge_apps"],
            cwd=ROOT / "bench",
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2.5)

    def kill_dramatiq(self) -> None:
        if self.dramatiq is not None and self.dramatiq.poll() is None:
            os.killpg(self.dramatiq.pid, signal.SIGKILL)
            self.dramatiq.wait()
        self.dramatiq = None

    def stop(self) -> None:
        self.kill_dramatiq()
        for proc in self.jobcord:
            proc.terminate()
            proc.wait(30)


def _wait(check, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.002)
    return False


def latency(broker: RedisBroker, r: redis.Redis, actor: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        key = f"{actor}-{i}"
        sent = time.time()
        broker.enqueue(Message("default", actor, (key, 0.05), {}, {}))
        if not _wait(lambda key=key: r.llen(f"bench:bridge:stored:{key}"), 30):
            raise RuntimeError(f"{actor}: flow {key} never reached stored")
        out.append(float(r.lindex(f"bench:bridge:stored:{key}", 0)) - sent)
    return out


def killed(procs: Processes, broker: RedisBroker, r: redis.Redis, actor: str, n: int):  # type: ignore[no-untyped-def]
    """Per flow: seconds from the kill to ``stored`` (None past --cap), GPU runs, stored runs."""
    rows = []
    for i in range(n):
        runs, stored = (
            f"bench:bridge:runs:kill-{actor}-{i}",
            f"bench:bridge:stored:kill-{actor}-{i}",
        )
        broker.enqueue(Message("default", actor, (f"kill-{actor}-{i}", 2.0), {}, {}))
        if not _wait(lambda runs=runs: r.llen(runs), 30):
            raise RuntimeError("the GPU step never started")
        killed_at = time.monotonic()
        procs.kill_dramatiq()
        procs.start_dramatiq()
        done = _wait(lambda stored=stored: r.llen(stored), CAP_S)
        took = time.monotonic() - killed_at if done else None
        time.sleep(KILL_HEARTBEAT_MS / 1000 + 4)  # a late redelivery or second run shows
        rows.append((took, r.llen(runs), r.llen(stored)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    url = _redis_url()
    base, _, db = url.rpartition("/")
    broker_url = f"{base}/{int(db or 12) - 1}"
    r = redis.Redis.from_url(url)
    results: dict[str, dict[str, object]] = {}
    for heartbeat, phase in ((60000, "latency"), (KILL_HEARTBEAT_MS, "kill")):
        _clean(r)
        redis.Redis.from_url(broker_url).flushdb()
        env = {
            **os.environ,
            "JOBCORD_REDIS_URL": url,
            "BENCH_BROKER_URL": broker_url,
            "BENCH_HEARTBEAT_MS": str(heartbeat),
            "JOBCORD_DRAMATIQ_BROKER_URL": broker_url,
            "PYTHONPATH": str(ROOT),
        }
        procs = Processes(env)
        broker = RedisBroker(url=broker_url, middleware=[])
        try:
            procs.start_jobcord()
            procs.start_dramatiq()
            for actor in ("plain_ingest", "bridged_ingest"):
                row = results.setdefault(actor, {})
                if phase == "latency":
                    row["latency"] = latency(broker, r, actor, args.requests)
                else:
                    row["kills"] = killed(procs, broker, r, actor, args.kills)
        finally:
            procs.stop()
            broker.close()
    _clean(r)
    redis.Redis.from_url(broker_url).flushdb()
    table = Table(title="A GPU step in a dramatiq flow (one Redis broker, dramatiq CLI defaults)")
    cols = ("flow", "send->stored p50 ms", "p90 ms", "killed: s to stored", "GPU runs", "stored")
    for col in cols:
        table.add_column(col, justify="left" if col == "flow" else "right")
    names = {
        "plain_ingest": "dramatiq alone, step inline",
        "bridged_ingest": "dramatiq + jobcord bridge",
    }
    for actor, row in results.items():
        lat = sorted(row["latency"])  # type: ignore[arg-type]
        kills = row["kills"]  # type: ignore[assignment]
        table.add_row(
            names[actor],
            f"{statistics.median(lat) * 1000:.1f}",
            f"{lat[int(len(lat) * 0.9) - 1] * 1000:.1f}",
            " ".join(f"{t:.1f}" if t is not None else f">{CAP_S:.0f}" for t, _, _ in kills),
            " ".join(str(runs) for _, runs, _ in kills),
            " ".join(str(stored) for _, _, stored in kills),
        )
    Console().print(table)
    print(
        "dramatiq CLI defaults (a process per core, 8 threads), RedisBroker heartbeat 60 s for"
        f" latency, {KILL_HEARTBEAT_MS / 1000:g} s for the kills (both flows); jobcord: one"
        " consumer (--gpus none --concurrency 1) and jobcord scheduler, defaults otherwise."
    )


if __name__ == "__main__":
    main()
