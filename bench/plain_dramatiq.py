"""The reference engine: plain dramatiq (default middleware) on the same Redis.

``python bench/plain_dramatiq.py THREADS`` runs a worker and prints "ready" once started.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from functools import cache

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

NAMESPACE = "bench-plain-dq"
QUEUE = "bench-plain"


@cache
def broker() -> RedisBroker:
    b = RedisBroker(url=os.environ["JOBCORD_REDIS_URL"], namespace=NAMESPACE)
    dramatiq.set_broker(b)
    return b


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"])


def _noop() -> None:
    return None


def _stamp(i: int, t0: float) -> None:
    started = time.time() - t0
    _redis().set(f"bench:lat:{i}", started)


def _hold(key: str, seconds: float) -> None:
    _redis().rpush(f"bench:starts:{key}", time.time())
    time.sleep(seconds)


@cache
def actors() -> tuple[dramatiq.Actor, dramatiq.Actor, dramatiq.Actor]:
    b = broker()
    return (
        dramatiq.actor(queue_name=QUEUE, broker=b, actor_name="noop")(_noop),
        dramatiq.actor(queue_name=QUEUE, broker=b, actor_name="stamp")(_stamp),
        dramatiq.actor(queue_name=QUEUE, broker=b, actor_name="hold")(_hold),
    )


def main() -> None:
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
