"""The same job for both engines: start four helpers (Popen, a fork-context child, one that
ignores SIGTERM, a double-forked daemon), report their pids, then hang past a 2 s limit;
and a marker job that stamps when the next job starts.

jobcord: ``jobcord worker bench.containment_apps:app``; dramatiq: ``python -m dramatiq
bench.containment_apps`` (its CLI defaults; its TimeLimit middleware is on by default).
"""

from __future__ import annotations

import os
import time
from functools import cache

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from jobcord.producers import App
from tests.apps.containment import HELPER_KINDS, start_helper

app = App("bench_containment")
NAMESPACE = "bench-containment-dq"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"])


def _helpers_then_hang(tag: str) -> None:
    for kind in HELPER_KINDS:
        start_helper(kind, tag)
    while True:  # pure Python: dramatiq's TimeLimit can interrupt it (C code it could not)
        time.sleep(0.05)


def _stamp(tag: str) -> None:
    _redis().set(f"bench:next:{tag}", time.time())


@app.job(timeout=2.0)
def helpers_then_hang(tag: str) -> None:
    _helpers_then_hang(tag)


@app.job()
def stamp(tag: str) -> None:
    _stamp(tag)


def _dramatiq_broker() -> RedisBroker:
    broker = RedisBroker(url=os.environ["JOBCORD_REDIS_URL"], namespace=NAMESPACE)
    dramatiq.set_broker(broker)
    return broker


_dramatiq_broker()
dq_helpers_then_hang = dramatiq.actor(
    _helpers_then_hang, actor_name="helpers_then_hang", time_limit=2000, max_retries=0
)
dq_stamp = dramatiq.actor(_stamp, actor_name="stamp", max_retries=0)
