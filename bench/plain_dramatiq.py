"""The reference engine: plain dramatiq with its Results middleware, on the same Redis.

Run it as dramatiq's users do, with its CLI (``python -m dramatiq bench.plain_dramatiq``; the
defaults are one process per CPU and 8 threads each); this module sets the broker up when the
CLI imports it. Only the benchmarks' environment (JOBCORD_REDIS_URL) is read.
"""

from __future__ import annotations

import os
import time
from functools import cache

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

NAMESPACE = "bench-plain-dq"
QUEUE = "bench-plain"


@cache
def broker() -> RedisBroker:
    url = os.environ["JOBCORD_REDIS_URL"]
    b = RedisBroker(url=url, namespace=NAMESPACE)
    b.add_middleware(Results(backend=RedisBackend(url=url, namespace=f"{NAMESPACE}-results")))
    dramatiq.set_broker(b)
    return b


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"])


def _noop() -> None:
    return None


def _sleep_ms(ms: float) -> None:
    time.sleep(ms / 1000)


def _stamp(i: int, t0: float) -> None:
    started = time.time() - t0
    _redis().set(f"bench:lat:{i}", started)


def _hold(key: str, seconds: float) -> None:
    _redis().rpush(f"bench:starts:{key}", time.time())
    time.sleep(seconds)


@cache
def actors() -> dict[str, dramatiq.Actor]:
    b = broker()

    def actor(fn, name: str) -> dramatiq.Actor:  # type: ignore[no-untyped-def]
        return dramatiq.actor(queue_name=QUEUE, broker=b, actor_name=name, store_results=True)(fn)

    return {
        "noop": actor(_noop, "noop"),
        "sleep_ms": actor(_sleep_ms, "sleep_ms"),
        "stamp": actor(_stamp, "stamp"),
        "hold": actor(_hold, "hold"),
    }


if "JOBCORD_REDIS_URL" in os.environ:  # imported by dramatiq's CLI: declare the actors
    actors()


def main() -> None:
    """``python bench/plain_dramatiq.py THREADS``: one worker in this very process (so that a
    SIGKILL of it is a SIGKILL of the consumer, as the redelivery benchmark needs)."""
    import signal
    import sys
    import threading

    actors()
    worker = dramatiq.Worker(broker(), worker_threads=int(sys.argv[1]))
    worker.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    worker.stop()


if __name__ == "__main__":
    main()
