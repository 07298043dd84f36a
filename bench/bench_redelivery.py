"""How long a request waits after its consumer is SIGKILLed mid-job: jobcord vs dramatiq.

    .venv/bin/python bench/bench_redelivery.py [--cap 150]

A job starts on consumer A; A is killed with SIGKILL; consumer B is already running. We time
from the kill to the job's second start. jobcord recovers on its lease (JOBCORD_LEASE_TTL_S,
5 s by default); dramatiq waits for its 60 s heartbeat timeout plus a random maintenance
pass. Waits longer than --cap seconds are reported as "> cap".
"""

from __future__ import annotations

import argparse
import time

import redis
from bench_lifecycle import Engine, Jobcord, PlainDramatiq, _clean, _redis_url
from rich.console import Console
from rich.table import Table


def measure(engine: Engine, r: redis.Redis, cap_s: float) -> float | None:
    _clean(r)
    engine.start()  # consumer A takes the job
    first = engine.proc
    assert first is not None
    try:
        engine.enqueue_hold("k", 600.0)
        deadline = time.monotonic() + 30
        while r.llen("bench:starts:k") < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the job never started")
            time.sleep(0.01)
        engine.proc = None
        engine.start()  # consumer B, idle and ready
        killed = time.monotonic()
        first.kill()  # SIGKILL: no cleanup of any kind
        first.wait()
        while r.llen("bench:starts:k") < 2:
            if time.monotonic() - killed > cap_s:
                return None
            time.sleep(0.01)
        return time.monotonic() - killed
    finally:
        engine.stop()
        if first.poll() is None:
            first.kill()
        _clean(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=150.0)
    args = parser.parse_args()
    url = _redis_url()
    r = redis.Redis.from_url(url)
    table = Table(title="SIGKILL of the consumer mid-job -> the job starts again elsewhere")
    table.add_column("engine")
    table.add_column("seconds to redelivery", justify="right")
    for engine in (Jobcord(url, 1), PlainDramatiq(url, 1)):  # one consumer each, to kill
        took = measure(engine, r, args.cap)
        table.add_row(engine.name, f"{took:.1f}" if took is not None else f"> {args.cap:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
