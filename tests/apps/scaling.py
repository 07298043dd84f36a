"""Apps the autoscaling tests run together on one worker: two GPU apps that share a host's
devices, and a CPU app whose replica count two hosts must agree on. Short windows and delays
so that scaling happens in seconds."""

from __future__ import annotations

import os
import time

import redis

from jobcord.producers import App, Autoscaling, NodeSelector

_FAST = {"window_s": 1.0, "scale_down_delay_s": 2.0, "concurrency_target": 1.0}

app_a = App("scale-a", autoscaling=Autoscaling(min_replicas=0, max_replicas=2, **_FAST))
app_b = App("scale-b", autoscaling=Autoscaling(min_replicas=0, max_replicas=2, **_FAST))
app_c = App("scale-c", autoscaling=Autoscaling(min_replicas=0, max_replicas=1, **_FAST))


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


def _started(app: str) -> dict[str, int]:
    _redis().incr(f"jobcord:test:scaling:startups:{app}")
    return {"pid": os.getpid()}


@app_a.on_startup()
def boot_a() -> dict[str, int]:
    return _started("a")


@app_b.on_startup()
def boot_b() -> dict[str, int]:
    return _started("b")


@app_c.on_startup()
def boot_c() -> dict[str, int]:
    return _started("c")


def _ran(seconds: float) -> dict[str, object]:
    started = time.time()
    time.sleep(seconds)
    return {
        "pid": os.getpid(),
        "device": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "started": started,
    }


@app_a.job(node_selector=NodeSelector(gpu_count=1))
def a_work(seconds: float) -> dict[str, object]:
    return _ran(seconds)


@app_b.job(node_selector=NodeSelector(gpu_count=1))
def b_work(seconds: float) -> dict[str, object]:
    return _ran(seconds)


@app_c.job()
def c_work(seconds: float) -> dict[str, object]:
    return _ran(seconds)


# One job scales on its own (its replicas take only its requests); the other shares the app's.
app_d = App("scale-d", autoscaling=Autoscaling(min_replicas=0, max_replicas=1, **_FAST))


@app_d.job(autoscaling=Autoscaling(min_replicas=0, max_replicas=1, **_FAST))
def d_own(seconds: float) -> dict[str, object]:
    return _ran(seconds)


@app_d.job()
def d_shared(seconds: float) -> dict[str, object]:
    return _ran(seconds)


# Its replicas fail their startup while jobcord:test:scaling:fail-e exists.
app_e = App("scale-e", autoscaling=Autoscaling(min_replicas=0, max_replicas=2, **_FAST))


@app_e.on_startup()
def boot_e() -> dict[str, int]:
    r = _redis()
    r.incr("jobcord:test:scaling:startups:e")
    if r.exists("jobcord:test:scaling:fail-e"):
        raise RuntimeError("model weights are missing")
    return {"pid": os.getpid()}


@app_e.job()
def e_work(seconds: float) -> dict[str, object]:
    return _ran(seconds)
